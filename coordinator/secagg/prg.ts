/**
 * Pseudo-random generators for secure aggregation, all ChaCha20 keystreams
 * under HKDF-derived keys:
 * - masks over Z_2^32: a seed expands to one uint32 per coordinate;
 * - a byte source for a client's own secrets (X25519 scalars, the self-mask
 *   seed, Shamir coefficients), expanded from 32 bytes the caller supplies.
 */
import type { Random } from '../components.ts'
import { InvalidArgumentError } from '../errors.ts'
import { chacha20Keystream, concatFields, hkdf, utf8 } from './primitives.ts'

const ZERO_NONCE = new Uint8Array(12)
// One ChaCha20 key addresses 2^32 blocks of 64 bytes = 2^36 uint32 values.
const MAX_MASK_VALUES = 2 ** 34

/**
 * A 32-byte key from secret input keying material, bound to the round
 * (`context` is the HKDF salt) and to a purpose (the labels, length-prefixed
 * so that no two label lists collide).
 */
export function deriveKey (ikm: Uint8Array, context: Uint8Array, ...labels: string[]): Uint8Array {
  return hkdf(ikm, context, concatFields(utf8('forgemesh/secagg/v1'), ...labels.map(utf8)), 32)
}

/** `length` uniform values of Z_2^32 from a mask key. */
export function expandMask (key: Uint8Array, length: number): Uint32Array {
  if (!Number.isInteger(length) || length < 0 || length > MAX_MASK_VALUES) throw new InvalidArgumentError(`mask length must be an integer 0..2^34, got ${length}`)
  const bytes = chacha20Keystream(key, ZERO_NONCE, length * 4)
  // Little-endian words; every platform Node runs on is little-endian, and a
  // Uint32Array view reads native order, so check once rather than per value.
  return new Uint32Array(bytes.buffer, bytes.byteOffset, length)
}

/** acc += sign * mask, coordinate-wise mod 2^32 (in place). */
export function addMaskInto (acc: Uint32Array, mask: Uint32Array, sign: 1 | -1): void {
  if (acc.length !== mask.length) throw new InvalidArgumentError(`mask of ${mask.length} values cannot be added to a vector of ${acc.length}`)
  if (sign === 1) for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! + mask[i]!
  else for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! - mask[i]!
}

/** Draws `n` bytes. */
export type ByteSource = (n: number) => Uint8Array

/**
 * A deterministic cryptographic byte source: ChaCha20 keystream under
 * HKDF(seed). Secure exactly when `seed` is 32 secret, uniformly random
 * bytes (crypto.randomBytes at the node layer).
 */
export function createByteSource (seed: Uint8Array, label: string): ByteSource {
  if (seed.length < 32) throw new InvalidArgumentError(`a byte-source seed needs at least 32 bytes, got ${seed.length}`)
  const key = hkdf(seed, new Uint8Array(0), utf8(`forgemesh/secagg/bytes/${label}`), 32)
  let block = 0
  return (n) => {
    const blocks = Math.ceil(n / 64)
    const out = chacha20Keystream(key, ZERO_NONCE, blocks * 64, block).subarray(0, n)
    block += blocks
    return out
  }
}

/**
 * 32 seed bytes drawn from the injected Random. sfc32 is not a CSPRNG: this
 * is for simulations and tests; a real site passes crypto.randomBytes(32).
 */
export function seedFromRandom (random: Random): Uint8Array {
  const out = new Uint8Array(32)
  const view = new DataView(out.buffer)
  for (let i = 0; i < 8; i++) view.setUint32(i * 4, random.int(2 ** 32))
  return out
}

if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) {
  throw new InvalidArgumentError('secure aggregation masks assume a little-endian platform')
}
