/**
 * IEEE 754 binary16 <-> binary32 on raw bits (Node 20 has no Float16Array).
 * Encoding rounds to nearest, ties to even, overflow goes to infinity and NaN
 * stays NaN; decoding is one table lookup per value.
 */

/** Rounds float32 bits to binary16 bits. */
export function f32BitsToF16 (x: number): number {
  const sign = (x >>> 16) & 0x8000
  const exp = (x >>> 23) & 0xff
  const mant = x & 0x7fffff
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0)
  const e = exp - 112 // rebias 127 -> 15
  if (e >= 31) return sign | 0x7c00
  if (e <= 0) {
    if (e < -10) return sign
    // Subnormal half: shift the 24-bit significand down, rounding the bits lost.
    const m = mant | 0x800000
    const s = 14 - e
    let h = m >>> s
    const rem = m & ((1 << s) - 1)
    const halfway = 1 << (s - 1)
    if (rem > halfway || (rem === halfway && (h & 1) !== 0)) h++
    return sign | h
  }
  let h = (e << 10) | (mant >>> 13)
  const rem = mant & 0x1fff
  // A carry out of the mantissa bumps the exponent, up to infinity: both correct.
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++
  return sign | h
}

let table: Float32Array | undefined

/** All 65536 half values as float32, built once on first use (256 KiB). */
function halfTable (): Float32Array {
  if (table !== undefined) return table
  const t = new Float32Array(65536)
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) !== 0 ? -1 : 1
    const exp = (h >>> 10) & 0x1f
    const mant = h & 0x3ff
    if (exp === 0) t[h] = sign * mant * 2 ** -24
    else if (exp === 31) t[h] = mant === 0 ? sign * Infinity : NaN
    else t[h] = sign * (1 + mant / 1024) * 2 ** (exp - 15)
  }
  table = t
  return t
}

export function encodeHalf (src: Float32Array, dst: Uint16Array): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length)
  for (let i = 0; i < bits.length; i++) dst[i] = f32BitsToF16(bits[i]!)
}

export function decodeHalf (src: Uint16Array, dst: Float32Array): void {
  const t = halfTable()
  for (let i = 0; i < src.length; i++) dst[i] = t[src[i]!]!
}
