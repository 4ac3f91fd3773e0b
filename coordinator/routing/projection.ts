/**
 * The shared coordinate system of the router: a PCA basis computed from the
 * sum of all sites' (noised) global moments. Every site projects its rows the
 * same way, so their released Gaussians are comparable.
 */
import type { Random } from '../components.ts'
import { RoutingInputError } from '../errors.ts'
import { topEigen } from './linalg.ts'
import { meanAndCovariance, type Moments } from './moments.ts'

export interface Projection {
  /** Input dimension (784 for MNIST). */
  inputDim: number
  /** Output dimension k. */
  dim: number
  mean: Float64Array
  /** inputDim × dim row-major, orthonormal columns, leading component first. */
  basis: Float64Array
  /** Projected rows are clipped to this L2 norm (release 2's sensitivity). */
  clipNorm: number
}

/** PCA basis of the federation's summed global moments. */
export function projectionFromMoments (global: Moments, dim: number, clipNorm: number, random: Random): Projection {
  if (!Number.isInteger(dim) || dim <= 0 || dim > global.dim) throw new RoutingInputError(`projection dimension must be an integer in 1..${global.dim}, got ${dim}`)
  if (!(global.count >= 1)) throw new RoutingInputError(`global moments hold no rows (count ${global.count})`)
  const { mean, covariance } = meanAndCovariance(global)
  const { vectors } = topEigen(covariance, global.dim, dim, random)
  // Fix each column's sign (largest entry positive) so every member derives the same cells from the same moments.
  for (let j = 0; j < dim; j++) {
    let best = 0
    for (let r = 0; r < global.dim; r++) if (Math.abs(vectors[r * dim + j]!) > Math.abs(best)) best = vectors[r * dim + j]!
    if (best < 0) for (let r = 0; r < global.dim; r++) vectors[r * dim + j] = -vectors[r * dim + j]!
  }
  return { inputDim: global.dim, dim, mean, basis: vectors, clipNorm }
}

/** n rows (n × inputDim) -> n × dim projected, centred and clipped coordinates. */
export function project (p: Projection, rows: ArrayLike<number>, n: number): Float64Array {
  if (rows.length !== n * p.inputDim) throw new RoutingInputError(`rows hold ${rows.length} values, expected n × inputDim = ${n} × ${p.inputDim}`)
  const { inputDim, dim } = p
  const out = new Float64Array(n * dim)
  for (let r = 0; r < n; r++) {
    const o = r * dim
    for (let i = 0; i < inputDim; i++) {
      const v = rows[r * inputDim + i]! - p.mean[i]!
      if (v === 0) continue
      const b = i * dim
      for (let j = 0; j < dim; j++) out[o + j] = out[o + j]! + v * p.basis[b + j]!
    }
    let norm2 = 0
    for (let j = 0; j < dim; j++) norm2 += out[o + j]! ** 2
    if (norm2 > p.clipNorm * p.clipNorm) {
      const s = p.clipNorm / Math.sqrt(norm2)
      for (let j = 0; j < dim; j++) out[o + j] = out[o + j]! * s
    }
  }
  return out
}

/** The cell of a projected row: bit j set when coordinate j is positive. A fixed, data-independent partition given the basis. */
export function cellOf (projected: ArrayLike<number>, row: number, dim: number, bits: number): number {
  let cell = 0
  for (let j = 0; j < bits; j++) if (projected[row * dim + j]! > 0) cell |= 1 << j
  return cell
}
