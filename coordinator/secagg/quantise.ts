/**
 * Fixed-point quantisation for secure aggregation. Masks live in Z_2^k
 * (k = 32 by default), so an update is first clipped to L2 norm C (which
 * bounds every coordinate by C), then scaled and rounded to integers. The sum
 * of n such vectors decodes without wrap-around as long as
 * n * (C * scale + 1) < 2^(k-1); `checkQuantisation` enforces that.
 */
import type { Random } from '../components.ts'
import { InvalidArgumentError } from '../errors.ts'

export type RingBits = 16 | 32

export interface QuantiseOptions {
  clipNorm: number
  /** Fixed-point scale: a value x becomes round(x * scale). */
  scale: number
  /** Ring Z_2^k the masked values live in. 16 halves the bytes on the wire when the range allows. */
  ringBits?: RingBits
  /** 'nearest' is deterministic; 'stochastic' is unbiased and needs a Random. */
  rounding?: 'nearest' | 'stochastic'
}

export function l2Norm (x: Float32Array): number {
  let s = 0
  for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!
  return Math.sqrt(s)
}

/** A copy of `x` scaled down to L2 norm `clipNorm` if it is longer. */
export function clipL2 (x: Float32Array, clipNorm: number): Float32Array {
  if (!(clipNorm > 0) || !Number.isFinite(clipNorm)) throw new InvalidArgumentError(`clipNorm must be a finite number > 0, got ${clipNorm}`)
  const norm = l2Norm(x)
  if (!Number.isFinite(norm)) throw new InvalidArgumentError('update holds a non-finite value')
  const out = new Float32Array(x)
  if (norm > clipNorm) {
    const f = clipNorm / norm
    for (let i = 0; i < out.length; i++) out[i] = out[i]! * f
  }
  return out
}

/** Largest |integer| a quantised coordinate can take. */
export function maxQuantised (clipNorm: number, scale: number): number {
  return Math.ceil(clipNorm * scale) + 1
}

/** Throws unless a sum of `n` quantised updates fits the signed range of Z_2^k. */
export function checkQuantisation (n: number, opts: QuantiseOptions): void {
  const bits = opts.ringBits ?? 32
  if (bits !== 16 && bits !== 32) throw new InvalidArgumentError(`ringBits must be 16 or 32, got ${String(bits)}`)
  if (!(opts.scale > 0) || !Number.isFinite(opts.scale)) throw new InvalidArgumentError(`scale must be a finite number > 0, got ${opts.scale}`)
  if (!(opts.clipNorm > 0) || !Number.isFinite(opts.clipNorm)) throw new InvalidArgumentError(`clipNorm must be a finite number > 0, got ${opts.clipNorm}`)
  const worst = n * maxQuantised(opts.clipNorm, opts.scale)
  if (worst >= 2 ** (bits - 1)) {
    throw new InvalidArgumentError(`a sum of ${n} updates clipped to ${opts.clipNorm} at scale ${opts.scale} can reach ${worst}, which overflows Z_2^${bits}; lower the scale to at most ${largestScale(n, opts.clipNorm, bits).toPrecision(6)}`)
  }
}

/** The largest scale that keeps a sum of `n` clipped updates inside Z_2^k. */
export function largestScale (n: number, clipNorm: number, bits: RingBits = 32): number {
  return (2 ** (bits - 1) / n - 2) / clipNorm
}

/**
 * Clip, then quantise to fixed point. Returns two's-complement integers mod
 * 2^32 (reduce with `reduceToRing` for a smaller ring).
 */
export function quantise (x: Float32Array, opts: QuantiseOptions, random?: Random): Uint32Array {
  const clipped = clipL2(x, opts.clipNorm)
  const out = new Uint32Array(clipped.length)
  const stochastic = opts.rounding === 'stochastic'
  if (stochastic && random === undefined) throw new InvalidArgumentError('stochastic rounding needs a Random')
  for (let i = 0; i < clipped.length; i++) {
    const v = clipped[i]! * opts.scale
    const q = stochastic ? Math.floor(v + random!.next()) : Math.round(v)
    out[i] = q >>> 0
  }
  return out
}

/** Keeps the low `bits` bits of each value: the image in Z_2^bits. */
export function reduceToRing (v: Uint32Array, bits: RingBits): Uint32Array {
  if (bits === 32) return v
  const m = 2 ** bits - 1
  for (let i = 0; i < v.length; i++) v[i] = v[i]! & m
  return v
}

/** Sum of integer vectors mod 2^k. */
export function ringSum (vectors: readonly Uint32Array[], length: number, bits: RingBits = 32): Uint32Array {
  const acc = new Uint32Array(length)
  for (const v of vectors) {
    if (v.length !== length) throw new InvalidArgumentError(`vector of ${v.length} values in a sum of length ${length}`)
    for (let i = 0; i < length; i++) acc[i] = acc[i]! + v[i]!
  }
  return reduceToRing(acc, bits)
}

/** Reads values of Z_2^k as signed integers. */
export function toSigned (v: Uint32Array, bits: RingBits = 32): Int32Array {
  const out = new Int32Array(v.length)
  const half = 2 ** (bits - 1)
  const mod = 2 ** bits
  for (let i = 0; i < v.length; i++) {
    const x = bits === 32 ? v[i]! : v[i]! % mod
    out[i] = x >= half ? x - mod : x
  }
  return out
}

/** The float sum back from a fixed-point sum. */
export function dequantise (sum: Uint32Array, scale: number, bits: RingBits = 32): Float32Array {
  const signed = toSigned(sum, bits)
  const out = new Float32Array(signed.length)
  for (let i = 0; i < signed.length; i++) out[i] = signed[i]! / scale
  return out
}

/** Wire form of ring values: k/8 little-endian bytes per value. */
export function encodeRing (v: Uint32Array, bits: RingBits): Uint8Array {
  if (bits === 32) return new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength))
  const out = new Uint16Array(v.length)
  for (let i = 0; i < v.length; i++) out[i] = v[i]! & 0xffff
  return new Uint8Array(out.buffer)
}

export function decodeRing (bytes: Uint8Array, bits: RingBits, length: number): Uint32Array {
  const width = bits / 8
  if (bytes.length !== length * width) throw new InvalidArgumentError(`ring vector of ${length} values at ${bits} bits needs ${length * width} bytes, got ${bytes.length}`)
  const copy = bytes.slice()
  return bits === 32 ? new Uint32Array(copy.buffer) : Uint32Array.from(new Uint16Array(copy.buffer))
}
