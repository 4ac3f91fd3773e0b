/**
 * Shamir t-of-n secret sharing over the prime field GF(p), p = 2^521 - 1
 * (a Mersenne prime, so any 64-byte secret is one field element and
 * reduction is cheap). A secret is the constant term of a random polynomial
 * of degree t-1; share i is the polynomial at x = i. Any t shares
 * interpolate it; t-1 shares are consistent with every possible secret and
 * so reveal nothing.
 *
 * Tampering: with more than t shares, every share must lie on the
 * polynomial the first t define; with a `check` (a commitment to the secret,
 * such as its public key or hash) a bad share is found and excluded.
 */
import { InvalidArgumentError, SecAggAbortedError, ShareTamperedError } from '../errors.ts'
import type { ByteSource } from './prg.ts'

export const SHAMIR_PRIME = (1n << 521n) - 1n
/** Bytes of one share value on the wire (521 bits, rounded up). */
export const SHARE_BYTES = 66
/** The largest secret, in bytes, that fits one field element. */
export const MAX_SECRET_BYTES = 64

export interface Share {
  /** Evaluation point, 1..n. */
  x: number
  y: bigint
}

function mod (a: bigint): bigint {
  const r = a % SHAMIR_PRIME
  return r < 0n ? r + SHAMIR_PRIME : r
}

function modPow (base: bigint, exp: bigint): bigint {
  let result = 1n
  let b = mod(base)
  let e = exp
  while (e > 0n) {
    if ((e & 1n) === 1n) result = (result * b) % SHAMIR_PRIME
    b = (b * b) % SHAMIR_PRIME
    e >>= 1n
  }
  return result
}

function inverse (a: bigint): bigint {
  if (mod(a) === 0n) throw new InvalidArgumentError('zero has no inverse')
  return modPow(a, SHAMIR_PRIME - 2n) // Fermat: a^(p-2) = a^-1 in GF(p)
}

export function bytesToField (bytes: Uint8Array): bigint {
  let v = 0n
  for (const b of bytes) v = (v << 8n) | BigInt(b)
  return v
}

export function fieldToBytes (v: bigint, length: number): Uint8Array {
  if (v < 0n || v >= 1n << BigInt(8 * length)) throw new ShareTamperedError(`value does not fit ${length} bytes: the shares do not encode a secret of that length`)
  const out = new Uint8Array(length)
  let x = v
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(x & 0xffn)
    x >>= 8n
  }
  return out
}

/** A uniform field element from a byte source (rejection sampling, no bias). */
function randomElement (bytes: ByteSource): bigint {
  for (;;) {
    const raw = bytes(SHARE_BYTES)
    raw[0]! &= 0x01 // keep 521 bits
    const v = bytesToField(raw)
    if (v < SHAMIR_PRIME) return v
  }
}

export interface ShamirParams {
  n: number
  threshold: number
}

export function checkShamirParams ({ n, threshold }: ShamirParams): void {
  if (!Number.isInteger(n) || n < 2 || n > 1000) throw new InvalidArgumentError(`Shamir n must be an integer 2..1000, got ${n}`)
  if (!Number.isInteger(threshold) || threshold < 2 || threshold > n) throw new InvalidArgumentError(`Shamir threshold must be an integer 2..n (${n}), got ${threshold}`)
}

/** Splits `secret` (at most 64 bytes) into shares at x = 1..n. */
export function splitSecret (secret: Uint8Array, params: ShamirParams, bytes: ByteSource): Share[] {
  checkShamirParams(params)
  if (secret.length > MAX_SECRET_BYTES) throw new InvalidArgumentError(`a Shamir secret holds at most ${MAX_SECRET_BYTES} bytes, got ${secret.length}`)
  const coeffs = [bytesToField(secret)]
  for (let k = 1; k < params.threshold; k++) coeffs.push(randomElement(bytes))
  const shares: Share[] = []
  for (let x = 1; x <= params.n; x++) shares.push({ x, y: evaluate(coeffs, BigInt(x)) })
  return shares
}

function evaluate (coeffs: readonly bigint[], x: bigint): bigint {
  let acc = 0n
  for (let k = coeffs.length - 1; k >= 0; k--) acc = (acc * x + coeffs[k]!) % SHAMIR_PRIME
  return acc
}

/** The polynomial through `points`, evaluated at `at` (Lagrange form). */
export function interpolateAt (points: readonly Share[], at: number): bigint {
  const xs = points.map(p => BigInt(p.x))
  const target = BigInt(at)
  let acc = 0n
  for (let i = 0; i < points.length; i++) {
    let num = 1n
    let den = 1n
    for (let j = 0; j < points.length; j++) {
      if (i === j) continue
      num = (num * mod(target - xs[j]!)) % SHAMIR_PRIME
      den = (den * mod(xs[i]! - xs[j]!)) % SHAMIR_PRIME
    }
    acc = (acc + points[i]!.y * num % SHAMIR_PRIME * inverse(den)) % SHAMIR_PRIME
  }
  return acc
}

function checkPoints (shares: readonly Share[]): void {
  const seen = new Set<number>()
  for (const s of shares) {
    if (!Number.isInteger(s.x) || s.x < 1) throw new InvalidArgumentError(`share x must be an integer >= 1, got ${s.x}`)
    if (seen.has(s.x)) throw new InvalidArgumentError(`two shares at x = ${s.x}`)
    if (typeof s.y !== 'bigint' || s.y < 0n || s.y >= SHAMIR_PRIME) throw new ShareTamperedError(`share at x = ${s.x} is not a field element`)
    seen.add(s.x)
  }
}

export interface ReconstructOptions {
  /** Byte length of the secret (as it was split). */
  length: number
  /** A commitment check: true when the candidate is the real secret. */
  check?: (secret: Uint8Array) => boolean
}

/**
 * Reconstructs the secret from at least `threshold` shares.
 * - fewer than `threshold`: SecAggAbortedError (nothing to reconstruct);
 * - more than `threshold` that do not lie on one polynomial, or a result that
 *   fails `check`: the shares that fit are searched for; if no `threshold`
 *   of them pass `check` (or, without a check, no consistent majority
 *   remains), ShareTamperedError.
 */
export function reconstructSecret (shares: readonly Share[], threshold: number, opts: ReconstructOptions): Uint8Array {
  checkPoints(shares)
  if (shares.length < threshold) throw new SecAggAbortedError(`${shares.length} shares cannot reconstruct a secret shared with threshold ${threshold}`)
  const tryBase = (base: readonly Share[]): Uint8Array | undefined => {
    let secret: Uint8Array
    try {
      secret = fieldToBytes(interpolateAt(base, 0), opts.length)
    } catch { return undefined }
    if (opts.check !== undefined) return opts.check(secret) ? secret : undefined
    // Without a commitment: every extra share must lie on the same polynomial.
    for (const s of shares) if (!base.includes(s) && interpolateAt(base, s.x) !== s.y) return undefined
    return secret
  }
  const first = tryBase(shares.slice(0, threshold))
  if (first !== undefined) return first
  if (opts.check === undefined || shares.length === threshold) {
    throw new ShareTamperedError(`the ${shares.length} shares do not lie on one polynomial of degree ${threshold - 1}${opts.check !== undefined ? ' matching its commitment' : ''}: at least one was altered`)
  }
  // A commitment lets us find a clean subset even with some bad shares.
  for (const subset of subsets(shares, threshold)) {
    const s = tryBase(subset)
    if (s !== undefined) return s
  }
  throw new ShareTamperedError(`no ${threshold} of the ${shares.length} shares reconstruct a secret matching its commitment: too many were altered`)
}

/** All k-subsets, lazily, in lexicographic order. C(n, k) stays small for n <= ~20. */
function * subsets<T> (items: readonly T[], k: number): Generator<T[]> {
  const idx = Array.from({ length: k }, (_, i) => i)
  for (;;) {
    yield idx.map(i => items[i]!)
    let i = k - 1
    while (i >= 0 && idx[i] === items.length - k + i) i--
    if (i < 0) return
    idx[i]!++
    for (let j = i + 1; j < k; j++) idx[j] = idx[j - 1]! + 1
  }
}

export function shareToBytes (s: Share): Uint8Array {
  return fieldToBytes(s.y, SHARE_BYTES)
}

export function shareFromBytes (x: number, bytes: Uint8Array): Share {
  if (bytes.length !== SHARE_BYTES) throw new ShareTamperedError(`a share is ${SHARE_BYTES} bytes, got ${bytes.length}`)
  const y = bytesToField(bytes)
  if (y >= SHAMIR_PRIME) throw new ShareTamperedError(`share at x = ${x} is not a field element`)
  return { x, y }
}
