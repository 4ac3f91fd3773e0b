import { describe, expect, it } from 'vitest'
import { createSeededRandom, type Random } from '../coordinator/components.ts'
import { DP_ROUTING, EXACT_ROUTING, type RoutingConfig } from '../coordinator/routing/config.ts'
import { addMoments } from '../coordinator/routing/moments.ts'
import { projectionFromMoments } from '../coordinator/routing/projection.ts'
import { releaseComponents, releaseGlobalMoments, type SiteRelease } from '../coordinator/routing/release.ts'
import { buildDensityRouter, gatesFromScores, scoreRows, type DensityRouter } from '../coordinator/routing/router.ts'
import { decodeSiteRelease, encodeSiteRelease } from '../coordinator/routing/schema.ts'

// Three sites in 12 dimensions, each holding two labels; every label is a Gaussian (std 1) around its own centre.
const DIM = 12
const SITES = 3
const centre = (label: number): number[] => Array.from({ length: DIM }, (_, j) => (j === label ? 8 : 0) + (j === (label + 5) % DIM ? 4 : 0))
function sample (labels: number[], random: Random): Float32Array {
  const x = new Float32Array(labels.length * DIM)
  labels.forEach((l, r) => { centre(l).forEach((c, j) => { x[r * DIM + j] = c + random.normal() }) })
  return x
}
const siteLabels = (s: number, n: number): number[] => Array.from({ length: n }, (_, i) => 2 * s + (i % 2))

function federate (config: RoutingConfig, seed: number, perSite = 400): DensityRouter {
  const random = createSeededRandom(seed)
  const data = Array.from({ length: SITES }, (_, s) => {
    const labels = siteLabels(s, perSite)
    return { labels, rows: sample(labels, random.fork(`data-${s}`)) }
  })
  const globals = data.map((d, s) => releaseGlobalMoments(d.rows, perSite, DIM, config, random.fork(`global-${s}`)))
  const projection = projectionFromMoments(addMoments(globals), config.components, config.clipProjected, random.fork('pca'))
  const releases: SiteRelease[] = data.map((d, s) => releaseComponents({ expert: s, rows: d.rows, labels: d.labels, n: perSite }, projection, config, random.fork(`components-${s}`)))
  return buildDensityRouter(projection, releases, SITES, config)
}

const SMALL: RoutingConfig = { ...EXACT_ROUTING, components: 6, cellBits: 1, clipInput: 30, clipProjected: 30, minCount: 20 }
const testLabels = Array.from({ length: 300 }, (_, i) => i % (2 * SITES))
const testRows = sample(testLabels, createSeededRandom('test-rows'))
const siteOf = (label: number): number => Math.floor(label / 2)
function argmaxRows (m: ArrayLike<number>, n: number, cols: number): number[] {
  return Array.from({ length: n }, (_, r) => { let b = 0; for (let c = 1; c < cols; c++) if (m[r * cols + c]! > m[r * cols + b]!) b = c; return b })
}

describe('density router on well-separated Gaussians', () => {
  const router = federate(SMALL, 1)
  const n = testLabels.length

  it('routes every row to the site that holds its label', () => {
    // 2 labels × 2 cells per site are released; the leading axis separates labels, so each label fills one cell and the empty ones fall under minCount.
    expect(router.components.length).toBe(SITES * 2)
    const picks = argmaxRows(scoreRows(router, testRows, n), n, SITES)
    expect(picks).toEqual(testLabels.map(siteOf))
  })

  it('gives gates that sum to 1 over the top-k, and exactly 0 elsewhere', () => {
    const gates = gatesFromScores(scoreRows(router, testRows, n), n, SITES, { topK: 2 })
    for (let r = 0; r < n; r++) {
      const row = Array.from(gates.subarray(r * SITES, (r + 1) * SITES))
      expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6)
      expect(row.filter(g => g === 0).length).toBeGreaterThanOrEqual(1)
      expect(row[siteOf(testLabels[r]!)]!).toBeGreaterThan(0.99) // separation 8 sigma: the runner-up is negligible
    }
  })

  it('never gives weight to an opted-out expert, and keeps routing the other sites exactly', () => {
    const scores = scoreRows(router, testRows, n)
    const gates = gatesFromScores(scores, n, SITES, { topK: 2, optOut: new Set([1]) })
    for (let r = 0; r < n; r++) expect(gates[r * SITES + 1]).toBe(0)
    const picks = argmaxRows(gates, n, SITES)
    testLabels.forEach((l, r) => { if (siteOf(l) !== 1) expect(picks[r]).toBe(siteOf(l)) })
    expect(() => gatesFromScores(scores, n, SITES, { topK: 1, optOut: new Set([0, 1, 2]) }))
      .toThrow(expect.objectContaining({ name: 'RoutingInputError', message: 'every one of the 3 experts is opted out' }))
  })

  it('is a pure function of its seed', () => {
    const again = federate(SMALL, 1)
    const five = testRows.subarray(0, 5 * DIM)
    expect(Array.from(scoreRows(again, five, 5))).toEqual(Array.from(scoreRows(router, five, 5)))
    const other = federate({ ...SMALL, privacy: DP_ROUTING.privacy }, 2)
    expect(Array.from(scoreRows(other, five, 5))).not.toEqual(Array.from(scoreRows(router, five, 5)))
  })

  it('still routes >= 99 % right from statistics released with epsilon = 8 (stated tolerance: 3 of 300 rows)', () => {
    const dp = federate({ ...SMALL, privacy: DP_ROUTING.privacy, tieAlpha: 0.5, shrink: 0.1, clipInput: 14, clipProjected: 10 }, 4, 1200)
    const picks = argmaxRows(scoreRows(dp, testRows, n), n, SITES)
    const wrong = picks.filter((p, r) => p !== siteOf(testLabels[r]!)).length
    expect(wrong).toBeLessThanOrEqual(3)
  })
})

describe('routing release on the wire', () => {
  const random = createSeededRandom(9)
  const labels = siteLabels(0, 100)
  const rows = sample(labels, random)
  const projection = projectionFromMoments(releaseGlobalMoments(rows, 100, DIM, SMALL, random), 4, 30, random)
  const release = releaseComponents({ expert: 0, rows, labels, n: 100 }, projection, { ...SMALL, components: 4 }, random)

  it('round-trips through JSON exactly', () => {
    const back = decodeSiteRelease(JSON.parse(JSON.stringify(encodeSiteRelease(release))))
    expect(back.expert).toBe(0)
    expect(back.components.map(c => [c.label, c.cell, c.moments.count])).toEqual(release.components.map(c => [c.label, c.cell, c.moments.count]))
    expect(Array.from(back.components[1]!.moments.outer)).toEqual(Array.from(release.components[1]!.moments.outer))
  })

  it('refuses malformed or oversized releases with a named error', () => {
    const wire = encodeSiteRelease(release)
    const broken = { ...wire, components: [{ ...wire.components[0]!, moments: { ...wire.components[0]!.moments, outer: [1, 2] } }] }
    expect(() => decodeSiteRelease(broken)).toThrow(expect.objectContaining({
      name: 'RoutingInputError',
      message: 'invalid routing release at components.0.moments: sum must hold dim values and outer dim·(dim+1)/2'
    }))
    expect(() => decodeSiteRelease(wire, { maxDim: 1024, maxComponents: 2 })).toThrow('release has 4 components, the limit is 2')
    expect(() => decodeSiteRelease({ expert: -1, components: [] })).toThrow('invalid routing release at expert')
  })

  it('refuses a router built from releases that disagree with the projection', () => {
    const bad: SiteRelease = { expert: 0, components: [{ ...release.components[0]!, moments: { ...release.components[0]!.moments, dim: 3 } }] }
    expect(() => buildDensityRouter(projection, [bad], 1, SMALL)).toThrow('component (label 0, cell 0) of expert 0 has dimension 3, the projection has 4')
    expect(() => buildDensityRouter(projection, [release, release], 2, SMALL)).toThrow('two releases for expert 0')
  })
})
