/**
 * The Gaussian mechanism on parameter updates, with the injected Random.
 *
 * Site level (shared parameters): a site's update is clipped to L2 norm C and
 * N(0, (z C)^2) is added per coordinate. Under secure aggregation the noise
 * can be split: each of the sites adds N(0, (z C)^2 / k) and only the sum
 * (with total variance >= (z C)^2 whenever at least k sites contribute) is
 * ever seen. Pass k = the secure-aggregation threshold, the fewest
 * contributors a round can have, so the guarantee holds under dropouts.
 *
 * Record level (DP-SGD, for expert training): per-example gradients (or
 * microbatch means) are clipped to C, summed, noised with N(0, (z C)^2)
 * and averaged.
 */
import type { Random } from '../components.ts'
import { InvalidArgumentError } from '../errors.ts'
import { flattenTensors, unflattenTensors, type TensorMap } from '../../protocols/tensors.ts'

export interface GaussianOptions {
  clipNorm: number
  /** z: noise standard deviation in units of the clip norm. 0 means clip only. */
  noiseMultiplier: number
  /** Split the noise across this many contributors (each adds variance / k). Default 1. */
  noiseShares?: number
}

export interface NoisedUpdate {
  values: Float32Array
  /** L2 norm before clipping. */
  norm: number
  clipped: boolean
  /** Standard deviation of the noise this call added per coordinate. */
  sigma: number
}

function checkOptions (o: GaussianOptions): number {
  if (!(o.clipNorm > 0) || !Number.isFinite(o.clipNorm)) throw new InvalidArgumentError(`clipNorm must be a finite number > 0, got ${o.clipNorm}`)
  if (!(o.noiseMultiplier >= 0) || !Number.isFinite(o.noiseMultiplier)) throw new InvalidArgumentError(`noiseMultiplier must be a finite number >= 0, got ${o.noiseMultiplier}`)
  const k = o.noiseShares ?? 1
  if (!Number.isInteger(k) || k < 1) throw new InvalidArgumentError(`noiseShares must be an integer >= 1, got ${k}`)
  return o.noiseMultiplier * o.clipNorm / Math.sqrt(k)
}

function norm2 (x: Float32Array): number {
  let s = 0
  for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!
  return Math.sqrt(s)
}

/** Clip `delta` to L2 norm C, then add Gaussian noise. Returns a new array. */
export function clipAndNoise (delta: Float32Array, opts: GaussianOptions, random: Random): NoisedUpdate {
  const sigma = checkOptions(opts)
  const norm = norm2(delta)
  if (!Number.isFinite(norm)) throw new InvalidArgumentError('update holds a non-finite value')
  const f = norm > opts.clipNorm ? opts.clipNorm / norm : 1
  const values = new Float32Array(delta.length)
  for (let i = 0; i < delta.length; i++) values[i] = delta[i]! * f + (sigma > 0 ? sigma * random.normal() : 0)
  return { values, norm, clipped: f < 1, sigma }
}

/** clipAndNoise over a whole TensorMap: one global norm across all tensors. */
export function clipAndNoiseTensors (delta: TensorMap, opts: GaussianOptions, random: Random): { tensors: TensorMap, norm: number, clipped: boolean, sigma: number } {
  const r = clipAndNoise(flattenTensors(delta), opts, random)
  return { tensors: unflattenTensors(r.values, delta), norm: r.norm, clipped: r.clipped, sigma: r.sigma }
}

export interface DpSgdOptions {
  clipNorm: number
  noiseMultiplier: number
  /** Examples per microbatch: their mean is clipped as one unit. Default 1 (per-example clipping). */
  microbatchSize?: number
}

/**
 * One DP-SGD gradient: clip each per-example gradient (or microbatch mean)
 * to C, sum, add N(0, (z C)^2), divide by the number of units. A record
 * changes one unit by at most C, so the sum has sensitivity C.
 */
export function dpSgdGradient (perExample: readonly Float32Array[], opts: DpSgdOptions, random: Random): Float32Array {
  const sigma = checkOptions({ clipNorm: opts.clipNorm, noiseMultiplier: opts.noiseMultiplier })
  const m = opts.microbatchSize ?? 1
  if (!Number.isInteger(m) || m < 1) throw new InvalidArgumentError(`microbatchSize must be an integer >= 1, got ${m}`)
  if (perExample.length === 0) throw new InvalidArgumentError('DP-SGD needs at least one example')
  if (perExample.length % m !== 0) throw new InvalidArgumentError(`${perExample.length} examples do not split into microbatches of ${m}`)
  const dim = perExample[0]!.length
  const sum = new Float64Array(dim)
  const unit = new Float32Array(dim)
  for (let start = 0; start < perExample.length; start += m) {
    unit.fill(0)
    for (let k = start; k < start + m; k++) {
      const g = perExample[k]!
      if (g.length !== dim) throw new InvalidArgumentError(`example ${k} has a gradient of ${g.length} values, the first has ${dim}`)
      for (let i = 0; i < dim; i++) unit[i]! += g[i]! / m
    }
    const n = norm2(unit)
    const f = n > opts.clipNorm ? opts.clipNorm / n : 1
    for (let i = 0; i < dim; i++) sum[i]! += unit[i]! * f
  }
  const units = perExample.length / m
  const out = new Float32Array(dim)
  for (let i = 0; i < dim; i++) out[i] = (sum[i]! + (sigma > 0 ? sigma * random.normal() : 0)) / units
  return out
}
