import { describe, expect, it } from 'vitest'
import { createSeededRandom, type Random } from '../coordinator/components.ts'
import { createDomain, decodeRows, encodeRows, type SynthColumn } from '../coordinator/synthetic/domain.ts'
import { fitTwoWay, marginOf, projectSimplex } from '../coordinator/synthetic/consistency.ts'
import { countTwoWay, tvd } from '../coordinator/synthetic/marginals.ts'
import { fitMst, sampleMst } from '../coordinator/synthetic/mst.ts'
import { exponentialMechanism, privateSpanningTree } from '../coordinator/synthetic/select.ts'
import { cdpDelta, deltaAtAlpha, rhoFromEpsDelta, rhoFromEpsDeltaClassic } from '../coordinator/synthetic/zcdp.ts'

describe('zCDP conversion (CKS20)', () => {
  it('returns the rho whose delta, minimised over alpha on a brute-force grid, equals the target', () => {
    for (const [eps, delta] of [[0.1, 1e-6], [1, 1e-6], [10, 1e-6], [1, 1e-9], [3, 1e-5]] as const) {
      const rho = rhoFromEpsDelta(eps, delta)
      let best = Infinity
      for (let k = -40_000; k <= 60_000; k++) best = Math.min(best, deltaAtAlpha(rho, eps, 1 + 10 ** (k / 10_000)))
      expect(Math.abs(best - delta) / delta).toBeLessThan(1e-3)
      expect(cdpDelta(rho, eps)).toBeLessThanOrEqual(delta)
      // Never worse than the classic bound, and better for these settings.
      expect(rho).toBeGreaterThan(rhoFromEpsDeltaClassic(eps, delta))
    }
  })

  it('gives the figures documented in docs/synthetic.md', () => {
    expect(rhoFromEpsDelta(1, 1e-6)).toBeCloseTo(0.024356, 6)
    expect(rhoFromEpsDelta(10, 1e-6)).toBeCloseTo(1.539279, 6)
    expect(rhoFromEpsDeltaClassic(1, 1e-6)).toBeCloseTo(0.017469, 6)
  })

  it('refuses eps <= 0 and delta outside (0, 1) with a named error', () => {
    expect(() => rhoFromEpsDelta(0, 1e-6)).toThrow(expect.objectContaining({ name: 'InvalidArgumentError', message: 'epsilon must be a finite number > 0, got 0' }))
    expect(() => rhoFromEpsDelta(1, 0)).toThrow(expect.objectContaining({ name: 'InvalidArgumentError', message: 'delta must be in (0, 1), got 0' }))
  })
})

describe('domain: schema-bounded bins', () => {
  const cols: SynthColumn[] = [
    { name: 'age', kind: 'numeric', min: 0, max: 100, bins: 10, integer: true },
    { name: 'score', kind: 'numeric', min: -1, max: 1, bins: 4, integer: false },
    { name: 'colour', kind: 'categorical', categories: ['red', 'green'] }
  ]

  it('bins numerics between schema bounds, clamping outliers into the edge bins', () => {
    const domain = createDomain(cols)
    expect(domain.sizes).toEqual([10, 4, 2])
    const e = encodeRows(domain, [[0, -1, 'red'], [99.9, 0.49, 'green'], [100, 1, 'red'], [-5, 7, 'green'], [35, 0, 'red']])
    expect(Array.from(e.codes[0]!)).toEqual([0, 9, 9, 0, 3])
    expect(Array.from(e.codes[1]!)).toEqual([0, 2, 3, 3, 2])
    expect(Array.from(e.codes[2]!)).toEqual([0, 1, 0, 1, 0])
  })

  it('decodes every code to a value that re-encodes to the same code', () => {
    const domain = createDomain(cols)
    const rng = createSeededRandom(1)
    const n = 2000
    const codes = domain.sizes.map(s => Int32Array.from({ length: n }, () => rng.int(s)))
    const rows = decodeRows(domain, { n, codes }, createSeededRandom(2))
    for (const row of rows) expect(Number.isInteger(row[0])).toBe(true)
    const again = encodeRows(domain, rows)
    for (let j = 0; j < codes.length; j++) expect(Array.from(again.codes[j]!)).toEqual(Array.from(codes[j]!))
  })

  it('refuses bad domains and values with named errors', () => {
    expect(() => createDomain([{ name: 'x', kind: 'numeric', min: 1, max: 1, bins: 4, integer: false }])).toThrow(expect.objectContaining({ name: 'SyntheticDomainError', message: "column 'x': numeric bounds must be finite with min < max, got [1, 1]" }))
    expect(() => createDomain([{ name: 'c', kind: 'categorical', categories: [] }])).toThrow(expect.objectContaining({ name: 'SyntheticDomainError', message: "column 'c': needs 1..1024 categories, got 0" }))
    expect(() => createDomain([cols[2]!, cols[2]!])).toThrow(expect.objectContaining({ name: 'SyntheticDomainError', message: "column 'colour' appears twice" }))
    const domain = createDomain(cols)
    expect(() => encodeRows(domain, [[1, 0, 'blue']])).toThrow(expect.objectContaining({ name: 'SyntheticDomainError', message: "row 0, column 'colour': 'blue' is not one of its categories" }))
    expect(() => encodeRows(domain, [[Number.NaN, 0, 'red']])).toThrow(expect.objectContaining({ name: 'SyntheticDomainError', message: "row 0, column 'age': expected a finite number, got null" }))
  })
})

describe('consistency and selection', () => {
  it('projects onto the scaled simplex exactly', () => {
    expect(Array.from(projectSimplex(Float64Array.from([3, 1, -2]), 2))).toEqual([2, 0, 0])
    expect(Array.from(projectSimplex(Float64Array.from([1, 1, 1]), 6))).toEqual([2, 2, 2])
    expect(Array.from(projectSimplex(Float64Array.from([5, 4, -10]), 7))).toEqual([4, 3, 0])
  })

  it('fits a non-negative 2-way table onto given margins', () => {
    const rng = createSeededRandom('fit')
    const noisy = Float64Array.from({ length: 12 }, () => 10 + 8 * rng.normal())
    const rows = Float64Array.from([30, 50, 20])
    const cols = Float64Array.from([10, 40, 25, 25])
    const t = fitTwoWay(noisy, rows, cols)
    expect(Math.min(...t)).toBeGreaterThanOrEqual(0)
    marginOf(t, 3, 4, 0).forEach((v, k) => { expect(v).toBeCloseTo(rows[k]!, 6) })
    marginOf(t, 3, 4, 1).forEach((v, k) => { expect(v).toBeCloseTo(cols[k]!, 6) })
  })

  it('the exponential mechanism follows exp(eps * score / 2)', () => {
    const rng = createSeededRandom('em')
    const counts = [0, 0, 0]
    const trials = 30_000
    for (let t = 0; t < trials; t++) counts[exponentialMechanism([0, 1, 2], 2, rng)]!++
    const z = 1 + Math.E + Math.E ** 2
    ;[1 / z, Math.E / z, Math.E ** 2 / z].forEach((p, k) => { expect(Math.abs(counts[k]! / trials - p)).toBeLessThan(0.01) })
  })

  it('always returns a spanning tree, and the best one when eps is large', () => {
    const w = [[0, 9, 1, 1], [9, 0, 8, 1], [1, 8, 0, 7], [1, 1, 7, 0]]
    const noisy = privateSpanningTree(4, () => 0, 1, createSeededRandom(3))
    expect(noisy).toHaveLength(3)
    expect(new Set(noisy.flat()).size).toBe(4)
    expect(privateSpanningTree(4, (i, j) => w[i]![j]! * 1000, 10, createSeededRandom(3))).toEqual([[0, 1], [1, 2], [2, 3]])
  })
})

/** A known distribution on a tree: A -> B -> C, A -> D -> E. */
const SIZES = [4, 5, 3, 6, 2]
const PARENT = [-1, 0, 1, 0, 3]
function knownDistribution (): { root: number[], cond: number[][][] } {
  const rng = createSeededRandom('known-distribution')
  const cond = SIZES.map((s, k) => k === 0
    ? []
    : Array.from({ length: SIZES[PARENT[k]!]! }, () => {
      const w = Array.from({ length: s }, () => Math.exp(1.5 * rng.normal()))
      const sum = w.reduce((a, b) => a + b)
      return w.map(x => x / sum)
    }))
  return { root: [0.4, 0.3, 0.2, 0.1], cond }
}
function drawRows (n: number, rng: Random): { n: number, codes: Int32Array[] } {
  const { root, cond } = knownDistribution()
  const pick = (p: number[]): number => { let u = rng.next(); for (let k = 0; k < p.length; k++) { u -= p[k]!; if (u < 0) return k } return p.length - 1 }
  const codes = SIZES.map(() => new Int32Array(n))
  for (let r = 0; r < n; r++) {
    codes[0]![r] = pick(root)
    for (let k = 1; k < SIZES.length; k++) codes[k]![r] = pick(cond[k]![codes[PARENT[k]!]![r]!]!)
  }
  return { n, codes }
}
/** The exact 2-way marginal of edge (PARENT[k], k), row-major over (parent, k). */
function trueEdgeMarginal (k: number): Float64Array {
  const { root, cond } = knownDistribution()
  const marg: number[][] = [root]
  for (let c = 1; c < SIZES.length; c++) marg[c] = Array.from({ length: SIZES[c]! }, (_, b) => marg[PARENT[c]!]!.reduce((s, pa, a) => s + pa * cond[c]![a]![b]!, 0))
  const p = PARENT[k]!
  const t = new Float64Array(SIZES[p]! * SIZES[k]!)
  for (let a = 0; a < SIZES[p]!; a++) for (let b = 0; b < SIZES[k]!; b++) t[a * SIZES[k]! + b] = marg[p]![a]! * cond[k]![a]![b]!
  return t
}

describe('MST on a known distribution', () => {
  it('is deterministic for a seed', () => {
    const data = drawRows(3000, createSeededRandom('d'))
    const run = (): Int32Array[] => sampleMst(fitMst(data, SIZES, { rho: 0.1 }, createSeededRandom(7)), 500, createSeededRandom(8)).codes
    expect(run()).toEqual(run())
  })

  // The curve of the issue, over eps = 0.1, 1, 10 (delta 1e-6), mean over 3
  // seeds, 20,000 real rows. Two views of the true tree's edges:
  // - synthetic vs exact: 100,000 synthetic rows against the known
  //   distribution. The real sample's own distance from the truth (about
  //   0.009 here) is a floor no generator can beat, so this flattens at high eps;
  // - model vs real: the generator's fitted edge tables against the real
  //   rows' marginals, i.e. the error the privacy noise adds, which keeps
  //   shrinking roughly as 1/eps.
  it('recovers the edge marginals within a tolerance that tightens as eps grows', () => {
    const edges = [1, 2, 3, 4]
    const key = (i: number, j: number): string => `${Math.min(i, j)}-${Math.max(i, j)}`
    const toleranceTruth: Record<number, number> = { 0.1: 0.06, 1: 0.016, 10: 0.013 }
    const toleranceNoise: Record<number, number> = { 0.1: 0.05, 1: 0.006, 10: 0.001 }
    const truth: Record<number, number> = {}
    const noise: Record<number, number> = {}
    for (const eps of [0.1, 1, 10]) {
      truth[eps] = 0
      noise[eps] = 0
      for (let s = 0; s < 3; s++) {
        const real = drawRows(20_000, createSeededRandom(`real-${s}`))
        const model = fitMst(real, SIZES, { rho: rhoFromEpsDelta(eps, 1e-6) }, createSeededRandom(`fit-${s}`))
        if (eps >= 1) expect(new Set(model.edges.map(([i, j]) => key(i, j)))).toEqual(new Set(edges.map(k => key(PARENT[k]!, k))))
        const synthetic = sampleMst(model, 100_000, createSeededRandom(`sample-${s}`))
        for (const k of edges) {
          truth[eps]! += tvd(countTwoWay(synthetic, PARENT[k]!, k, SIZES), trueEdgeMarginal(k)) / edges.length / 3
          const e = model.edges.findIndex(([i, j]) => key(i, j) === key(PARENT[k]!, k))
          // A missed edge counts as the worst case.
          noise[eps]! += (e < 0 ? 1 : tvd(model.twoWay[e]!, countTwoWay(real, model.edges[e]![0], model.edges[e]![1], SIZES))) / edges.length / 3
        }
      }
    }
    console.log('eps curve, synthetic vs exact:', JSON.stringify(truth), 'model vs real rows:', JSON.stringify(noise))
    for (const eps of [0.1, 1, 10]) {
      expect(truth[eps]!).toBeLessThan(toleranceTruth[eps]!)
      expect(noise[eps]!).toBeLessThan(toleranceNoise[eps]!)
    }
    expect(truth[0.1]!).toBeGreaterThan(truth[1]!)
    expect(truth[1]!).toBeGreaterThan(truth[10]!)
    expect(noise[0.1]! / noise[1]!).toBeGreaterThan(3)
    expect(noise[1]! / noise[10]!).toBeGreaterThan(3)
  })
})
