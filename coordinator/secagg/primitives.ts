/**
 * Thin wrappers around node:crypto's deterministic primitives: X25519
 * (RFC 7748), HKDF-SHA256 (RFC 5869), ChaCha20 and ChaCha20-Poly1305
 * (RFC 8439). They are pure functions of their inputs, which is why they may
 * live in coordinator/: no key is ever generated here from hidden entropy;
 * every secret comes from seed bytes the caller passes in.
 */
import { createCipheriv, createDecipheriv, createHash, createPrivateKey, createPublicKey, diffieHellman, hkdfSync } from 'node:crypto'
import { InvalidArgumentError, SecAggProtocolError } from '../errors.ts'

// DER prefixes of an X25519 PKCS#8 private key and SPKI public key (RFC 8410);
// the raw 32 key bytes follow. node:crypto has no raw import for X25519.
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex')
const SPKI_X25519 = Buffer.from('302a300506032b656e032100', 'hex')

export const KEY_BYTES = 32

function need32 (what: string, bytes: Uint8Array): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== KEY_BYTES) {
    throw new InvalidArgumentError(`${what} must be ${KEY_BYTES} bytes, got ${bytes instanceof Uint8Array ? bytes.length : typeof bytes}`)
  }
}

function privateKeyObject (secret: Uint8Array) {
  need32('X25519 private key', secret)
  return createPrivateKey({ key: Buffer.concat([PKCS8_X25519, secret]), format: 'der', type: 'pkcs8' })
}

function publicKeyObject (pub: Uint8Array) {
  need32('X25519 public key', pub)
  return createPublicKey({ key: Buffer.concat([SPKI_X25519, pub]), format: 'der', type: 'spki' })
}

/** The X25519 public key (u-coordinate) of a 32-byte private scalar. */
export function x25519PublicKey (secret: Uint8Array): Uint8Array {
  const der = createPublicKey(privateKeyObject(secret)).export({ format: 'der', type: 'spki' })
  return new Uint8Array(der.subarray(der.length - KEY_BYTES))
}

/**
 * X25519(secret, peerPublic). An all-zero result (a small-order peer key)
 * is refused: it would give the pair a mask everyone can compute.
 */
export function x25519 (secret: Uint8Array, peerPublic: Uint8Array): Uint8Array {
  const privateKey = privateKeyObject(secret)
  need32('X25519 public key', peerPublic)
  let out: Buffer
  try {
    out = diffieHellman({ privateKey, publicKey: publicKeyObject(peerPublic) })
  } catch (err) {
    throw new SecAggProtocolError('X25519 agreement failed: the peer public key is not usable', { cause: err })
  }
  if (out.every(b => b === 0)) throw new SecAggProtocolError('X25519 agreement gave the all-zero secret: the peer public key has small order')
  return new Uint8Array(out)
}

/** HKDF-SHA256: extract with `salt`, expand to `length` bytes with `info`. */
export function hkdf (ikm: Uint8Array, salt: Uint8Array, info: Uint8Array | string, length: number): Uint8Array {
  const infoBytes = typeof info === 'string' ? new TextEncoder().encode(info) : info
  return new Uint8Array(hkdfSync('sha256', ikm, salt, infoBytes, length))
}

/**
 * `length` bytes of ChaCha20 keystream for (key, 12-byte nonce), starting at
 * block `counter`. OpenSSL takes a 16-byte IV: the 32-bit little-endian block
 * counter, then the nonce.
 */
export function chacha20Keystream (key: Uint8Array, nonce: Uint8Array, length: number, counter = 0): Uint8Array {
  need32('ChaCha20 key', key)
  if (nonce.length !== 12) throw new InvalidArgumentError(`ChaCha20 nonce must be 12 bytes, got ${nonce.length}`)
  if (!Number.isInteger(counter) || counter < 0 || counter > 0xffffffff) throw new InvalidArgumentError(`ChaCha20 counter must be a 32-bit unsigned integer, got ${counter}`)
  const iv = Buffer.alloc(16)
  iv.writeUInt32LE(counter, 0)
  iv.set(nonce, 4)
  const cipher = createCipheriv('chacha20', key, iv)
  // Encrypting zeros yields the keystream itself.
  const out = new Uint8Array(length)
  const written = cipher.update(out)
  out.set(written)
  return out
}

/** ChaCha20 encryption (XOR with the keystream), for the RFC 8439 vectors. */
export function chacha20Xor (key: Uint8Array, nonce: Uint8Array, data: Uint8Array, counter = 0): Uint8Array {
  const ks = chacha20Keystream(key, nonce, data.length, counter)
  for (let i = 0; i < data.length; i++) ks[i]! ^= data[i]!
  return ks
}

export const AEAD_TAG_BYTES = 16

/** ChaCha20-Poly1305 (RFC 8439 §2.8): ciphertext || 16-byte tag. */
export function aeadSeal (key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  need32('AEAD key', key)
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: AEAD_TAG_BYTES })
  c.setAAD(aad, { plaintextLength: plaintext.length })
  const body = Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()])
  return new Uint8Array(body)
}

/** Opens an aeadSeal box; a wrong key, nonce, AAD or any flipped bit throws. */
export function aeadOpen (key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array {
  need32('AEAD key', key)
  if (sealed.length < AEAD_TAG_BYTES) throw new SecAggProtocolError(`sealed box of ${sealed.length} bytes is shorter than its tag`)
  const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: AEAD_TAG_BYTES })
  d.setAAD(aad, { plaintextLength: sealed.length - AEAD_TAG_BYTES })
  d.setAuthTag(sealed.subarray(sealed.length - AEAD_TAG_BYTES))
  const body = d.update(sealed.subarray(0, sealed.length - AEAD_TAG_BYTES))
  d.final() // throws 'Unsupported state or unable to authenticate data' on tampering
  return new Uint8Array(body)
}

export function sha256 (...parts: Uint8Array[]): Uint8Array {
  const h = createHash('sha256')
  for (const p of parts) h.update(p)
  return new Uint8Array(h.digest())
}

export function bytesEqual (a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!
  return diff === 0
}

export function utf8 (s: string): Uint8Array {
  return new TextEncoder().encode(s)
}

/** Length-prefixed concatenation, so distinct field lists never encode alike. */
export function concatFields (...parts: Uint8Array[]): Uint8Array {
  let total = 0
  for (const p of parts) total += 4 + p.length
  const out = new Uint8Array(total)
  const view = new DataView(out.buffer)
  let off = 0
  for (const p of parts) {
    view.setUint32(off, p.length, false)
    out.set(p, off + 4)
    off += 4 + p.length
  }
  return out
}
