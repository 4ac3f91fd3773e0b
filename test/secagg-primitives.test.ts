import { describe, expect, it } from 'vitest'
import { aeadOpen, aeadSeal, chacha20Keystream, chacha20Xor, hkdf, x25519, x25519PublicKey } from '../coordinator/secagg/primitives.ts'
import { createByteSource, expandMask } from '../coordinator/secagg/prg.ts'

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'))
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

describe('X25519 through our wrapper (RFC 7748)', () => {
  it('§5.2 scalar multiplication vectors', () => {
    expect(toHex(x25519(
      hex('a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4'),
      hex('e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c')
    ))).toBe('c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552')
    expect(toHex(x25519(
      hex('4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d'),
      hex('e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493')
    ))).toBe('95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957')
  })

  it('§6.1 Diffie-Hellman: both public keys and the shared secret', () => {
    const a = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a')
    const b = hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb')
    expect(toHex(x25519PublicKey(a))).toBe('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a')
    expect(toHex(x25519PublicKey(b))).toBe('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f')
    const k = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742'
    expect(toHex(x25519(a, x25519PublicKey(b)))).toBe(k)
    expect(toHex(x25519(b, x25519PublicKey(a)))).toBe(k)
  })

  it('refuses a small-order peer key (all-zero shared secret) and wrong lengths with named errors', () => {
    const a = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a')
    expect(() => x25519(a, new Uint8Array(32))).toThrow(expect.objectContaining({ name: 'SecAggProtocolError' }))
    expect(() => x25519(a, new Uint8Array(31))).toThrow(expect.objectContaining({ name: 'InvalidArgumentError', message: expect.stringContaining('32 bytes') }))
  })
})

describe('ChaCha20 through our wrapper (RFC 8439)', () => {
  const key = Uint8Array.from({ length: 32 }, (_, i) => i)

  it('§2.3.2 block function: keystream block for counter 1', () => {
    expect(toHex(chacha20Keystream(key, hex('000000090000004a00000000'), 64, 1))).toBe(
      '10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e' +
      'd2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e')
  })

  it('§2.4.2 encryption of the sunscreen plaintext', () => {
    const plain = new TextEncoder().encode("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.")
    expect(toHex(chacha20Xor(key, hex('000000000000004a00000000'), plain, 1))).toBe(
      '6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0b' +
      'f91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d8' +
      '07ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab7793736' +
      '5af90bbf74a35be6b40b8eedf2785e42874d')
  })

  it('A.1 test vector 1: all-zero key and nonce, counter 0', () => {
    expect(toHex(chacha20Keystream(new Uint8Array(32), new Uint8Array(12), 64, 0))).toBe(
      '76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7' +
      'da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586')
  })

  it('masks are the keystream read as little-endian uint32', () => {
    const m = expandMask(new Uint8Array(32), 2)
    expect([...m]).toEqual([0xade0b876, 0x903df1a0])
  })

  it('ChaCha20-Poly1305 detects a flipped bit in the box or a different AAD', () => {
    const nonce = new Uint8Array(12)
    const box = aeadSeal(key, nonce, new Uint8Array([1, 2, 3]), new Uint8Array([9]))
    expect([...aeadOpen(key, nonce, box, new Uint8Array([9]))]).toEqual([1, 2, 3])
    const bad = box.slice()
    bad[0]! ^= 1
    expect(() => aeadOpen(key, nonce, bad, new Uint8Array([9]))).toThrow()
    expect(() => aeadOpen(key, nonce, box, new Uint8Array([8]))).toThrow()
  })
})

describe('HKDF-SHA256 through our wrapper (RFC 5869)', () => {
  it('test case 1 (salt and info)', () => {
    expect(toHex(hkdf(hex('0b'.repeat(22)), hex('000102030405060708090a0b0c'), hex('f0f1f2f3f4f5f6f7f8f9'), 42))).toBe(
      '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865')
  })

  it('test case 3 (empty salt and info)', () => {
    expect(toHex(hkdf(hex('0b'.repeat(22)), new Uint8Array(0), new Uint8Array(0), 42))).toBe(
      '8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8')
  })
})

describe('byte source', () => {
  it('is determined by its seed and label, and never repeats a block', () => {
    const seed = new Uint8Array(32).fill(7)
    const a = createByteSource(seed, 'x')
    const b = createByteSource(seed, 'x')
    const a1 = a(40)
    expect(toHex(b(40))).toBe(toHex(a1))
    expect(toHex(a(40))).not.toBe(toHex(a1))
    expect(toHex(createByteSource(seed, 'y')(40))).not.toBe(toHex(a1))
    expect(() => createByteSource(new Uint8Array(16), 'x')).toThrow(expect.objectContaining({ name: 'InvalidArgumentError' }))
  })
})
