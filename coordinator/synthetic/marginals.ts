/**
 * Count marginals over encoded rows, their noisy measurement, and the
 * total-variation distance between two of them. A 2-way table of columns
 * (i, j) is row-major: cell [a * sizes[j] + b] counts rows with codes (a, b).
 */
import type { Random } from '../components.ts'
import type { Encoded } from './domain.ts'

export function countOneWay (data: Encoded, column: number, size: number): Float64Array {
  const out = new Float64Array(size)
  const codes = data.codes[column]!
  for (let r = 0; r < data.n; r++) out[codes[r]!]! += 1
  return out
}

export function countTwoWay (data: Encoded, i: number, j: number, sizes: readonly number[]): Float64Array {
  const sj = sizes[j]!
  const out = new Float64Array(sizes[i]! * sj)
  const ci = data.codes[i]!
  const cj = data.codes[j]!
  for (let r = 0; r < data.n; r++) out[ci[r]! * sj + cj[r]!]! += 1
  return out
}

/** The Gaussian mechanism: a fresh copy with N(0, sigma^2) added to every cell. */
export function addGaussian (counts: Float64Array, sigma: number, random: Random): Float64Array {
  const out = new Float64Array(counts.length)
  for (let k = 0; k < counts.length; k++) out[k] = counts[k]! + sigma * random.normal()
  return out
}

/** Total variation distance between two histograms after normalising each to sum 1. */
export function tvd (p: Float64Array, q: Float64Array): number {
  let sp = 0
  let sq = 0
  for (let k = 0; k < p.length; k++) { sp += p[k]!; sq += q[k]! }
  if (sp <= 0 || sq <= 0) return sp === sq ? 0 : 1
  let d = 0
  for (let k = 0; k < p.length; k++) d += Math.abs(p[k]! / sp - q[k]! / sq)
  return d / 2
}
