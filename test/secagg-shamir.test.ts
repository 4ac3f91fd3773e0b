import { describe, expect, it } from 'vitest'
import { createByteSource } from '../coordinator/secagg/prg.ts'
import { sha256 } from '../coordinator/secagg/primitives.ts'
import { SHAMIR_PRIME, bytesToField, interpolateAt, reconstructSecret, shareFromBytes, shareToBytes, splitSecret, type Share } from '../coordinator/secagg/shamir.ts'

const secret = sha256(new TextEncoder().encode('the secret'))
const bytes = createByteSource(new Uint8Array(32).fill(3), 'shamir-test')

function * combinations<T> (items: T[], k: number, start = 0, acc: T[] = []): Generator<T[]> {
  if (acc.length === k) { yield [...acc]; return }
  for (let i = start; i < items.length; i++) yield * combinations(items, k, i + 1, [...acc, items[i]!])
}

describe('Shamir t-of-n over GF(2^521 - 1)', () => {
  const n = 6
  const t = 4
  const shares = splitSecret(secret, { n, threshold: t }, bytes)

  it('any t (or more) of the n shares reconstruct the secret exactly', () => {
    let subsets = 0
    for (let k = t; k <= n; k++) {
      for (const subset of combinations(shares, k)) {
        expect(Buffer.from(reconstructSecret(subset, t, { length: 32 })).equals(Buffer.from(secret))).toBe(true)
        subsets++
      }
    }
    expect(subsets).toBe(15 + 6 + 1)
  })

  it('t - 1 shares do not: reconstruction refuses, and they fit every candidate secret equally', () => {
    const few = shares.slice(0, t - 1)
    expect(() => reconstructSecret(few, t, { length: 32 })).toThrow(expect.objectContaining({ name: 'SecAggAbortedError', message: expect.stringContaining('threshold 4') }))
    // Interpolating t - 1 points (degree t - 2) at 0 misses the secret ...
    expect(interpolateAt(few, 0)).not.toBe(bytesToField(secret))
    // ... and for any other secret B there is a degree t - 1 polynomial through (0, B)
    // and the same t - 1 shares: the shares say nothing about which secret it is.
    for (const candidate of [0n, 1n, 12345678901234567890n, SHAMIR_PRIME - 1n]) {
      const points: Share[] = [{ x: 0 as number, y: candidate }, ...few].map(p => ({ ...p }))
      // interpolateAt needs distinct x >= 0; x = 0 is allowed here as a point.
      for (const s of few) expect(interpolateAt(points, s.x)).toBe(s.y)
      expect(interpolateAt(points, 0)).toBe(candidate)
    }
  })

  it('round-trips shares through their 66-byte wire form', () => {
    for (const s of shares) expect(shareFromBytes(s.x, shareToBytes(s))).toEqual(s)
    expect(() => shareFromBytes(1, new Uint8Array(65))).toThrow(expect.objectContaining({ name: 'ShareTamperedError' }))
    expect(() => shareFromBytes(1, new Uint8Array(66).fill(0xff))).toThrow(expect.objectContaining({ name: 'ShareTamperedError', message: expect.stringContaining('not a field element') }))
  })

  it('detects a tampered share among more than t shares without a commitment', () => {
    const tampered = shares.map(s => s.x === 5 ? { x: 5, y: (s.y + 1n) % SHAMIR_PRIME } : s)
    expect(() => reconstructSecret(tampered, t, { length: 32 })).toThrow(expect.objectContaining({ name: 'ShareTamperedError', message: expect.stringContaining('at least one was altered') }))
  })

  it('with a commitment, excludes a tampered share and still recovers; with exactly t shares it reports the tampering', () => {
    const check = (s: Uint8Array): boolean => Buffer.from(sha256(s)).equals(Buffer.from(sha256(secret)))
    const tampered = shares.map(s => s.x === 1 ? { x: 1, y: (s.y * 7n) % SHAMIR_PRIME } : s)
    expect(Buffer.from(reconstructSecret(tampered, t, { length: 32, check })).equals(Buffer.from(secret))).toBe(true)
    expect(() => reconstructSecret(tampered.slice(0, t), t, { length: 32, check })).toThrow(expect.objectContaining({ name: 'ShareTamperedError' }))
    // n - t + 1 tampered shares leave no clean t-subset. (Distinct offsets: equal
    // ones can cancel in some subsets by coincidence, as x = {1,2,4,5} shows for +9.)
    const wrecked = shares.map(s => s.x <= 3 ? { x: s.x, y: (s.y + 7n ** BigInt(s.x + 40)) % SHAMIR_PRIME } : s)
    expect(() => reconstructSecret(wrecked, t, { length: 32, check })).toThrow(expect.objectContaining({ name: 'ShareTamperedError', message: expect.stringContaining('too many were altered') }))
  })

  it('rejects bad parameters with named errors', () => {
    expect(() => splitSecret(secret, { n: 3, threshold: 4 }, bytes)).toThrow(expect.objectContaining({ name: 'InvalidArgumentError', message: expect.stringContaining('threshold') }))
    expect(() => splitSecret(new Uint8Array(65), { n: 3, threshold: 2 }, bytes)).toThrow(expect.objectContaining({ name: 'InvalidArgumentError', message: expect.stringContaining('64 bytes') }))
    expect(() => reconstructSecret([shares[0]!, shares[0]!, shares[1]!, shares[2]!], t, { length: 32 })).toThrow(expect.objectContaining({ name: 'InvalidArgumentError', message: expect.stringContaining('two shares at x = 1') }))
  })
})
