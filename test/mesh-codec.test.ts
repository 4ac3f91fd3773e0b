import { readFileSync, statSync, writeFileSync, chmodSync } from 'node:fs'
import { join } from 'node:path'
import { inspect } from 'node:util'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { createSeededRandom } from '../coordinator/components.ts'
import { decodeFrame, encodeFrame, FrameParser } from '../protocols/frame/frame.ts'
import { decodeTensors, encodeTensors, f32BitsToF16, tensorBodyHash } from '../protocols/tensor-codec/index.ts'
import type { TensorMap } from '../protocols/tensors.ts'
import { checkCompatibility } from '../protocols/membership/membership.ts'
import { loadOrCreateIdentity, peerIdFromPublicKey, verifySignature } from '../node/identity.ts'
import { generatePsk, loadPsk } from '../node/mesh/host.ts'
import { tempDir } from './mesh-helpers.ts'

const Header = z.object({ kind: z.literal('x'), n: z.number().int() }).strict()

function randomMap (seed: number): TensorMap {
  const rng = createSeededRandom(seed)
  const make = (shape: number[]): Float32Array => Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal() * 2)
  return new Map([
    ['a.weight', { shape: [37, 13], data: make([37, 13]) }],
    ['b.bias', { shape: [1000], data: make([1000]) }],
    ['c.scalar', { shape: [], data: make([]) }],
    ['d.empty', { shape: [0, 4], data: new Float32Array(0) }]
  ])
}

describe('frames', () => {
  it('round-trips header and body, and an absent body stays absent', () => {
    const body = new Uint8Array([9, 8, 7])
    const f = decodeFrame(encodeFrame({ kind: 'x', n: 5 }, body), Header, { maxFrameBytes: 1024 })
    expect(f.header).toEqual({ kind: 'x', n: 5 })
    expect([...f.body!]).toEqual([9, 8, 7])
    expect(decodeFrame(encodeFrame({ kind: 'x', n: 1 }), Header, { maxFrameBytes: 1024 }).body).toBeUndefined()
  })

  it('refuses an oversized frame from its length field alone', () => {
    const parser = new FrameParser({ maxFrameBytes: 100 })
    parser.push(new Uint8Array([0x7f, 0xff, 0xff, 0xff]))
    expect(() => parser.next()).toThrow(expect.objectContaining({ name: 'FrameTooLargeError', message: 'frame of 2147483651 bytes exceeds this protocol\'s limit of 100' }))
  })

  it('reassembles frames split at every byte boundary', () => {
    const a = encodeFrame({ kind: 'x', n: 1 }, new Uint8Array(50).fill(1))
    const b = encodeFrame({ kind: 'x', n: 2 })
    const all = new Uint8Array([...a, ...b])
    for (let cut = 1; cut < all.length; cut++) {
      const p = new FrameParser({ maxFrameBytes: 1024 })
      p.push(all.subarray(0, cut))
      const got: number[] = []
      for (let f = p.next(); f !== undefined; f = p.next()) got.push(decodeFrame(f, Header, { maxFrameBytes: 1024 }).header.n)
      p.push(all.subarray(cut))
      for (let f = p.next(); f !== undefined; f = p.next()) got.push(decodeFrame(f, Header, { maxFrameBytes: 1024 }).header.n)
      expect(got).toEqual([1, 2])
    }
  })

  it('names the field a header fails on', () => {
    expect(() => decodeFrame(encodeFrame({ kind: 'x', n: 1.5 }), Header, { maxFrameBytes: 1024 }))
      .toThrow(expect.objectContaining({ name: 'FrameHeaderError', message: expect.stringContaining('frame header rejected: n:') }))
  })
})

describe('named-tensor codec', () => {
  const map = randomMap(1)

  it('f32 is exact', () => {
    const out = decodeTensors(encodeTensors(map, { dtype: 'f32' }))
    expect([...out.keys()]).toEqual([...map.keys()])
    for (const [name, t] of map) {
      expect(out.get(name)!.shape).toEqual(t.shape)
      expect(out.get(name)!.data).toEqual(t.data)
    }
  })

  it('can leave f32 tensors in place in a body it owns, and frames keep bodies 8-aligned', () => {
    const body = encodeTensors(map, { dtype: 'f32' })
    const frame = encodeFrame({ kind: 'x', n: 123 }, body)
    const f = decodeFrame(frame, Header, { maxFrameBytes: 1 << 20 })
    expect(f.body!.byteOffset % 8).toBe(0)
    const inPlace = decodeTensors(f.body!, { copy: false }).get('a.weight')!.data
    expect(inPlace.buffer).toBe(frame.buffer)
    expect(inPlace).toEqual(map.get('a.weight')!.data)
    expect(decodeTensors(f.body!).get('a.weight')!.data.buffer).not.toBe(frame.buffer)
  })

  it('f16 is within half a unit in the last place (2^-11 relative) and rounds ties to even', () => {
    const out = decodeTensors(encodeTensors(map, { dtype: 'f16' }))
    for (const [name, t] of map) {
      const d = out.get(name)!.data
      for (let i = 0; i < t.data.length; i++) expect(Math.abs(d[i]! - t.data[i]!)).toBeLessThanOrEqual(Math.abs(t.data[i]!) * 2 ** -11 + 2 ** -25)
    }
    const bits = (x: number): number => new Uint32Array(new Float32Array([x]).buffer)[0]!
    expect(f32BitsToF16(bits(1))).toBe(0x3c00)
    expect(f32BitsToF16(bits(65504))).toBe(0x7bff)
    expect(f32BitsToF16(bits(65520))).toBe(0x7c00) // halfway to the next binade: rounds to infinity
    expect(f32BitsToF16(bits(1 + 2 ** -11))).toBe(0x3c00) // tie, even stays
    expect(f32BitsToF16(bits(1 + 3 * 2 ** -11))).toBe(0x3c02) // tie, odd rounds up
    expect(f32BitsToF16(bits(2 ** -24))).toBe(0x0001)
    expect(f32BitsToF16(bits(2 ** -25))).toBe(0x0000)
    expect(f32BitsToF16(bits(-Infinity))).toBe(0xfc00)
    expect(f32BitsToF16(bits(NaN)) & 0x7e00).toBe(0x7e00)
  })

  it('int8 blockwise absmax is within half a step (absmax/254) of each value, per block', () => {
    const blockSize = 64
    const out = decodeTensors(encodeTensors(map, { dtype: 'int8', blockSize }))
    for (const [name, t] of map) {
      const d = out.get(name)!.data
      for (let b = 0; b * blockSize < t.data.length; b++) {
        const block = t.data.subarray(b * blockSize, (b + 1) * blockSize)
        const step = Math.max(...block.map(Math.abs)) / 127
        block.forEach((v, i) => { expect(Math.abs(d[b * blockSize + i]! - v)).toBeLessThanOrEqual(step / 2 * (1 + 1e-6)) })
      }
    }
  })

  it('rejects a tampered body with TensorChecksumError, and a re-hashed lie with TensorCodecError', () => {
    const body = encodeTensors(map, { dtype: 'f32' })
    const tampered = body.slice()
    tampered[tampered.length - 1]! ^= 1
    expect(() => decodeTensors(tampered)).toThrow(expect.objectContaining({ name: 'TensorChecksumError', message: expect.stringContaining(`carries sha256 ${tensorBodyHash(body)}`) }))
    expect(() => decodeTensors(body, { maxBytes: 100 })).toThrow(expect.objectContaining({ name: 'TensorCodecError', message: `tensor body of ${body.byteLength} bytes exceeds the limit of 100` }))
  })

  it('refuses what int8 cannot encode, naming the tensor', () => {
    const bad: TensorMap = new Map([['w', { shape: [2], data: new Float32Array([1, Infinity]) }]])
    expect(() => encodeTensors(bad, { dtype: 'int8' })).toThrow(expect.objectContaining({ name: 'TensorEncodeError', message: "tensor 'w' holds a non-finite value in block 0; int8 cannot encode it" }))
    const wrong: TensorMap = new Map([['w', { shape: [3], data: new Float32Array(2) }]])
    expect(() => encodeTensors(wrong, { dtype: 'f32' })).toThrow(expect.objectContaining({ name: 'TensorEncodeError' }))
  })
})

describe('membership compatibility', () => {
  const base = { site: 'a', roles: ['member'], capabilities: [], modelSpecHash: 'a'.repeat(64), protocols: ['/forgemesh/update/1.0.0', '/forgemesh/model/1.2.0'] }
  it('accepts a minor-version difference and refuses a different model spec or major version, with a reason', () => {
    expect(checkCompatibility(base, { ...base, site: 'b', protocols: ['/forgemesh/update/1.4.0', '/forgemesh/model/1.0.0'] })).toEqual({ ok: true })
    expect(checkCompatibility(base, { ...base, site: 'b', modelSpecHash: 'b'.repeat(64) })).toEqual({ ok: false, code: 'model-spec-mismatch', reason: "site 'b' runs model spec bbbbbbbbbbbb…, this site runs aaaaaaaaaaaa…" })
    expect(checkCompatibility(base, { ...base, site: 'b', protocols: ['/forgemesh/update/2.0.0', '/forgemesh/model/1.0.0'] })).toEqual({ ok: false, code: 'protocol-mismatch', reason: "site 'b' speaks update 2.x, this site 1.x" })
  })
})

describe('site identity and federation key', () => {
  let dir: ReturnType<typeof tempDir>
  beforeEach(() => { dir = tempDir('fm-id-') })
  afterEach(() => { dir.remove() })

  it('persists an Ed25519 key 0600, reloads the same peer id, signs and verifies', async () => {
    const path = join(dir.path, 'keys', 'identity.json')
    const a = await loadOrCreateIdentity(path)
    expect(statSync(path).mode & 0o777).toBe(0o600)
    const b = await loadOrCreateIdentity(path)
    expect(b.peerId).toBe(a.peerId)
    expect(a.publicKey.byteLength).toBe(32)
    expect(peerIdFromPublicKey(a.publicKey)).toBe(a.peerId)
    const msg = new TextEncoder().encode('expert artifact')
    const sig = await a.sign(msg)
    expect(await verifySignature(a.publicKey, msg, sig)).toBe(true)
    expect(await verifySignature(a.publicKey, new TextEncoder().encode('expert artifacT'), sig)).toBe(false)
    // Printing the identity shows the peer id and never the key.
    const keyB64 = JSON.parse(readFileSync(path, 'utf8')).privateKey as string
    expect(JSON.stringify(a)).toBe(JSON.stringify({ peerId: a.peerId }))
    expect(inspect(a, { depth: 5, showHidden: false })).toBe(`SiteIdentity(${a.peerId})`)
    expect(JSON.stringify({ a })).not.toContain(keyB64.slice(8, 40))
  })

  it('refuses an identity file others can read, and a corrupt one', async () => {
    const path = join(dir.path, 'identity.json')
    await loadOrCreateIdentity(path)
    chmodSync(path, 0o644)
    await expect(loadOrCreateIdentity(path)).rejects.toMatchObject({ name: 'IdentityFileError', message: `identity file ${path} is readable by others (mode 644); run chmod 600 on it` })
    writeFileSync(path, '{"v":1,"type":"Ed25519","privateKey":"AAAA"}', { mode: 0o600 })
    chmodSync(path, 0o600)
    await expect(loadOrCreateIdentity(path)).rejects.toMatchObject({ name: 'IdentityFileError', message: `identity file ${path} holds no valid Ed25519 key` })
  })

  it('reads a generated swarm key and refuses anything else', async () => {
    const path = join(dir.path, 'swarm.key')
    const psk = generatePsk()
    writeFileSync(path, psk)
    expect(await loadPsk(path)).toEqual(psk)
    writeFileSync(path, 'not a key')
    await expect(loadPsk(path)).rejects.toMatchObject({ name: 'PskFileError', message: `${path} is not a swarm key (expected /key/swarm/psk/1.0.0/, /base16/ and 64 lowercase hex digits)` })
    await expect(loadPsk(join(dir.path, 'missing.key'))).rejects.toMatchObject({ name: 'PskFileError' })
  })
})
