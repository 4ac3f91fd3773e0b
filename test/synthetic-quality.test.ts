import { describe, expect, it } from 'vitest'
import { createSeededRandom } from '../coordinator/components.ts'
import { createDomain, encodeRows, type RawValue } from '../coordinator/synthetic/domain.ts'
import { mlEfficacy } from '../coordinator/synthetic/efficacy.ts'
import { splitHoldout } from '../coordinator/synthetic/generator.ts'
import { tvd } from '../coordinator/synthetic/marginals.ts'
import { gowerDistance, marginalFidelity, privacySanity, quantile } from '../coordinator/synthetic/quality.ts'

const domain = createDomain([
  { name: 'x', kind: 'numeric', min: 0, max: 100, bins: 4, integer: false },
  { name: 'c', kind: 'categorical', categories: ['a', 'b'] }
])

describe('quality metrics', () => {
  it('TVD of normalised histograms', () => {
    expect(tvd(Float64Array.from([1, 0]), Float64Array.from([0, 1]))).toBe(1)
    expect(tvd(Float64Array.from([2, 2]), Float64Array.from([1, 3]))).toBe(0.25)
    expect(tvd(Float64Array.from([5, 5]), Float64Array.from([1, 1]))).toBe(0)
  })

  it('marginal fidelity: zero for the same rows, exact for a shifted column', () => {
    const real: RawValue[][] = [[10, 'a'], [30, 'b'], [60, 'a'], [90, 'b']]
    const same = marginalFidelity(domain, encodeRows(domain, real), encodeRows(domain, real))
    expect(same.oneWay.mean).toBe(0)
    expect(same.twoWay).toEqual({ mean: 0, max: 0, pairs: 1 })
    // Every c flipped: x keeps its marginal, c's is the same too (2 a, 2 b), the pair differs entirely.
    const flipped = marginalFidelity(domain, encodeRows(domain, real), encodeRows(domain, real.map(([x, c]) => [x!, c === 'a' ? 'b' : 'a'])))
    expect(flipped.oneWay.perColumn).toEqual({ x: 0, c: 0 })
    expect(flipped.twoWay.mean).toBe(1)
  })

  it('Gower distance, exact matches and DCR against the training rows', () => {
    expect(gowerDistance(domain, [10, 'a'], [20, 'b'])).toBeCloseTo((0.1 + 1) / 2, 12)
    const train: RawValue[][] = [[10, 'a'], [50, 'b']]
    const synthetic: RawValue[][] = [[10, 'a'], [60, 'b'], [90, 'a'], [50, 'b']]
    const holdout: RawValue[][] = [[12, 'a']]
    const p = privacySanity(domain, train, synthetic, holdout, createSeededRandom(1))
    expect(p.exactMatchRate).toBe(0.5)
    expect(p.holdoutExactMatchRate).toBe(0)
    // DCRs: 0, 0.05 ([60,b] to [50,b]: 0.1 / 2), 0.4 ([90,a] to [10,a]: 0.8 / 2), 0; median of 0, 0, 0.05, 0.4.
    expect(p.dcr.median).toBeCloseTo(0.025, 12)
    expect(quantile(Float64Array.from([0, 0, 0.05, 0.4]), 0.5)).toBeCloseTo(0.025, 12)
    expect(p.dcr.holdoutMedian).toBeCloseTo(0.01, 12)
  })

  it('ML efficacy: 1 for a faithful copy, low for rows whose label relation is broken', () => {
    const rng = createSeededRandom('eff')
    const rows = (n: number, flip: boolean): RawValue[][] => Array.from({ length: n }, () => {
      const x = rng.next() * 100
      const c = x < 50 ? 'a' : 'b'
      return [x, flip ? (c === 'a' ? 'b' : 'a') : c]
    })
    const train = rows(200, false)
    const holdout = rows(100, false)
    const faithful = mlEfficacy(domain, 1, train, rows(200, false), holdout)
    expect(faithful.realAccuracy).toBeGreaterThan(0.95)
    expect(faithful.ratio).toBeGreaterThan(0.97)
    const broken = mlEfficacy(domain, 1, train, rows(200, true), holdout)
    expect(broken.ratio).toBeLessThan(0.1)
  })

  it('splits a seeded holdout of the requested size, the same for the same seed', () => {
    const a = splitHoldout(100, 0.2, createSeededRandom(5))
    expect(a.holdout).toHaveLength(20)
    expect(a.train).toHaveLength(80)
    expect(new Set([...a.train, ...a.holdout]).size).toBe(100)
    expect(splitHoldout(100, 0.2, createSeededRandom(5))).toEqual(a)
    expect(() => splitHoldout(10, 1, createSeededRandom(5))).toThrow(expect.objectContaining({ name: 'InvalidArgumentError', message: 'the holdout fraction must be in [0, 1), got 1' }))
  })
})
