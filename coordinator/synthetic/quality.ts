/**
 * The quality report's statistical and privacy figures, synthetic vs real.
 *
 * Fidelity: the mean total-variation distance of every 1-way and every 2-way
 * marginal, on the generator's own discretisation (so a numeric column is
 * compared bin by bin).
 * Privacy sanity: the share of synthetic rows that equal a real training row
 * exactly, and each synthetic row's distance to the closest real record
 * (DCR) under the Gower distance: |x - y| / (max - min) for numerics (schema
 * bounds), 0/1 for categoricals, averaged over columns, so it lies in [0, 1].
 * The same figures for held-out real rows give the reference: synthetic rows
 * sitting much closer to the training rows than unseen real rows do would be
 * a sign of memorisation. These figures read the real rows and are NOT
 * differentially private: they are for the site, never for release.
 */
import type { Random } from '../components.ts'
import type { Domain, Encoded, RawValue } from './domain.ts'
import { countOneWay, countTwoWay, tvd } from './marginals.ts'

export interface MarginalFidelity {
  oneWay: { mean: number, max: number, perColumn: Record<string, number> }
  twoWay: { mean: number, max: number, pairs: number }
}

export function marginalFidelity (domain: Domain, real: Encoded, synthetic: Encoded): MarginalFidelity {
  const names = domain.columns.map(c => c.name)
  const sizes = domain.sizes
  const perColumn: Record<string, number> = {}
  const one = sizes.map((s, j) => {
    const v = tvd(countOneWay(real, j, s), countOneWay(synthetic, j, s))
    perColumn[names[j]!] = v
    return v
  })
  const two: number[] = []
  for (let i = 0; i < sizes.length; i++) {
    for (let j = i + 1; j < sizes.length; j++) two.push(tvd(countTwoWay(real, i, j, sizes), countTwoWay(synthetic, i, j, sizes)))
  }
  return {
    oneWay: { mean: mean(one), max: Math.max(...one), perColumn },
    twoWay: { mean: mean(two), max: two.length > 0 ? Math.max(...two) : 0, pairs: two.length }
  }
}

/** Gower distance between two raw rows of the domain. */
export function gowerDistance (domain: Domain, a: readonly RawValue[], b: readonly RawValue[]): number {
  let d = 0
  for (let j = 0; j < domain.columns.length; j++) {
    const c = domain.columns[j]!
    if (c.kind === 'categorical') d += a[j] === b[j] ? 0 : 1
    else d += Math.min(1, Math.abs(Number(a[j]) - Number(b[j])) / (c.max - c.min))
  }
  return d / domain.columns.length
}

export interface PrivacySanity {
  /** Share of synthetic rows equal to some real training row in every column. */
  exactMatchRate: number
  /** The same share for held-out real rows (real data repeats itself too). */
  holdoutExactMatchRate: number | null
  dcr: { median: number, p05: number, holdoutMedian: number | null, holdoutP05: number | null, queried: number }
}

export interface PrivacySanityOptions {
  /** DCR is O(queries x train x columns): at most this many query rows, drawn with `random`. */
  maxQueries?: number
}

export function privacySanity (domain: Domain, train: readonly (readonly RawValue[])[], synthetic: readonly (readonly RawValue[])[], holdout: readonly (readonly RawValue[])[], random: Random, options: PrivacySanityOptions = {}): PrivacySanity {
  const keys = new Set(train.map(rowKey))
  const matchRate = (rows: readonly (readonly RawValue[])[]): number => rows.length === 0 ? 0 : rows.filter(r => keys.has(rowKey(r))).length / rows.length
  const maxQueries = options.maxQueries ?? 2000
  const dcr = (rows: readonly (readonly RawValue[])[], rng: Random): Float64Array => {
    const picked = rows.length <= maxQueries ? rows : sampleWithoutReplacement(rows.length, maxQueries, rng).map(k => rows[k]!)
    const out = new Float64Array(picked.length)
    picked.forEach((q, k) => {
      let best = Infinity
      for (const t of train) {
        const dist = gowerDistance(domain, q, t)
        if (dist < best) best = dist
        if (best === 0) break
      }
      out[k] = best
    })
    return out.sort()
  }
  const s = dcr(synthetic, random.fork('dcr-synthetic'))
  const h = holdout.length > 0 ? dcr(holdout, random.fork('dcr-holdout')) : null
  return {
    exactMatchRate: matchRate(synthetic),
    holdoutExactMatchRate: holdout.length > 0 ? matchRate(holdout) : null,
    dcr: {
      median: quantile(s, 0.5),
      p05: quantile(s, 0.05),
      holdoutMedian: h === null ? null : quantile(h, 0.5),
      holdoutP05: h === null ? null : quantile(h, 0.05),
      queried: s.length
    }
  }
}

function rowKey (row: readonly RawValue[]): string {
  // JSON keeps 3 and '3' apart; categorical and numeric columns never mix anyway.
  return JSON.stringify(row)
}

/** Linear-interpolated quantile of sorted values. */
export function quantile (sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN
  const pos = (sorted.length - 1) * q
  const lo = Math.floor(pos)
  const hi = Math.ceil(pos)
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo)
}

/** k distinct indices of 0..n-1 (partial Fisher-Yates). */
export function sampleWithoutReplacement (n: number, k: number, random: Random): number[] {
  const idx = Array.from({ length: n }, (_, i) => i)
  for (let i = 0; i < k; i++) {
    const j = i + random.int(n - i)
    const t = idx[i]!
    idx[i] = idx[j]!
    idx[j] = t
  }
  return idx.slice(0, k)
}

function mean (xs: readonly number[]): number {
  return xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length
}
