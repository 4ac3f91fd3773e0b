/**
 * The update/artifact path's pipelining keeps every check: bodies sent as
 * parts are byte-identical to encoded bodies, digests taken while chunks
 * arrive equal a hash of the whole, a claimed length is not allocated before
 * half of it has arrived, and a large tampered body is still refused.
 */
import { createHash } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSeededRandom } from '../coordinator/components.ts'
import type { SiteHost } from '../node/mesh/host.ts'
import { memorySink } from '../node/mesh/blob-io.ts'
import type { ReceivedUpdate, UpdateService } from '../node/mesh/update.ts'
import { decodeFrameHead, encodeFrame, encodeFrameParts, FrameParser, type BodyHasher } from '../protocols/frame/frame.ts'
import { BODY_HASH_FROM, decodeTensors, encodeTensorParts, encodeTensors } from '../protocols/tensor-codec/index.ts'
import type { TensorMap } from '../protocols/tensors.ts'
import { tempDir, updatePair, waitFor, type UpdatePair } from './mesh-helpers.ts'

function tensors (seed: number, sizes: number[]): TensorMap {
  const rng = createSeededRandom(seed)
  return new Map(sizes.map((n, i) => [`t${i}`, { shape: [n], data: Float32Array.from({ length: n }, () => rng.normal()) }]))
}

const concat = (parts: readonly Uint8Array[]): Buffer => Buffer.concat(parts)
const sha = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest()

describe('bodies as parts', () => {
  const map = tensors(3, [37, 0, 1000, 1])

  it('f32 parts are the encoded body byte for byte, its data straight from the caller arrays', () => {
    const enc = encodeTensorParts(map, { dtype: 'f32' })
    const body = encodeTensors(map, { dtype: 'f32' })
    expect(concat(enc.parts).equals(Buffer.from(body))).toBe(true)
    expect(enc.byteLength).toBe(body.byteLength)
    expect(enc.hash).toBe(sha(body.subarray(BODY_HASH_FROM)).toString('hex'))
    expect(enc.parts[1]!.buffer).toBe(map.get('t0')!.data.buffer)
  })

  it('f16 and int8 parts equal their encoded bodies', () => {
    for (const dtype of ['f16', 'int8'] as const) {
      const enc = encodeTensorParts(map, { dtype })
      expect(concat(enc.parts).equals(Buffer.from(encodeTensors(map, { dtype })))).toBe(true)
    }
  })

  it('a frame from parts equals the frame from the joined body', () => {
    const enc = encodeTensorParts(map, { dtype: 'f32' })
    expect(Buffer.from(encodeFrame({ kind: 'x' }, enc.parts)).equals(Buffer.from(encodeFrame({ kind: 'x' }, concat(enc.parts))))).toBe(true)
    expect(encodeFrameParts({ kind: 'x' }, enc.parts)).toHaveLength(1 + enc.parts.length)
  })
})

describe('digest on arrival', () => {
  const body = encodeTensors(tensors(4, [3000, 17]), { dtype: 'f32' })
  const frame = encodeFrame({ kind: 'update', n: 1 }, body)
  const expected = sha(body.subarray(BODY_HASH_FROM))

  it('equals the hash of the whole body wherever the stream is cut', () => {
    for (let cut = 1; cut < frame.byteLength; cut += 97) {
      const p = new FrameParser({ maxFrameBytes: 1 << 20 }, { bodyDigestFrom: BODY_HASH_FROM })
      p.push(frame.subarray(0, cut))
      expect(p.nextFrame()).toBeUndefined()
      p.push(frame.subarray(cut))
      const f = p.nextFrame()!
      expect(Buffer.from(f.bytes).equals(Buffer.from(frame))).toBe(true)
      expect(Buffer.from(f.bodyDigest as Uint8Array).equals(expected)).toBe(true)
      expect(p.bufferedBytes).toBe(0)
    }
  })

  it('equals it for a frame in thousands of small chunks, and the decoder checks the carried hash against it', () => {
    const p = new FrameParser({ maxFrameBytes: 1 << 20 }, { bodyDigestFrom: BODY_HASH_FROM })
    for (let off = 0; off < frame.byteLength; off += 5) p.push(frame.subarray(off, off + 5))
    const f = p.nextFrame()!
    const digest = f.bodyDigest as Uint8Array // node:crypto on this thread: not a promise
    expect(Buffer.from(digest).equals(expected)).toBe(true)
    const start = f.bytes.byteLength - body.byteLength
    expect(decodeTensors(f.bytes.subarray(start), { digest }).get('t1')!.data.length).toBe(17)
    const wrong = new Uint8Array(digest)
    wrong[0]! ^= 1
    expect(() => decodeTensors(f.bytes.subarray(start), { digest: wrong })).toThrow(expect.objectContaining({ name: 'TensorChecksumError', message: expect.stringContaining(`but hashes to ${Buffer.from(wrong).toString('hex')}`) }))
    expect(() => decodeTensors(f.bytes.subarray(start), { digest: new Uint8Array(31) })).toThrow(expect.objectContaining({ name: 'TensorCodecError', message: 'a body digest is 32 bytes, got 31' }))
  })

  it('hands the body to a supplied hasher (its digest a promise), sized by the bytes to hash; discard() drops a half-received frame\'s hash', async () => {
    const asked: number[] = []
    const events: string[] = []
    const hasherFor = (bytes: number): BodyHasher => {
      asked.push(bytes)
      const h = createHash('sha256')
      return { update: (b) => { h.update(Uint8Array.from(b)) }, digest: async () => h.digest(), abort: () => { events.push('abort') } }
    }
    const p = new FrameParser({ maxFrameBytes: 1 << 20 }, { bodyDigestFrom: BODY_HASH_FROM, bodyHasher: hasherFor })
    for (let off = 0; off < frame.byteLength; off += 1000) p.push(frame.subarray(off, off + 1000))
    const f = p.nextFrame()!
    expect(f.bodyDigest).toBeInstanceOf(Promise)
    expect(Buffer.from(await f.bodyDigest!).equals(expected)).toBe(true)
    expect(asked).toEqual([body.byteLength - BODY_HASH_FROM])
    // A second frame cut off half-way: its hasher is told, the parser holds no hash.
    p.push(frame.subarray(0, frame.byteLength >> 1))
    expect(p.nextFrame()).toBeUndefined()
    p.discard()
    expect(events).toEqual(['abort'])
  })

  it('does not allocate a claimed length before half of it has arrived', () => {
    const claimed = 64 * 1024 * 1024
    const prefix = new Uint8Array(8)
    new DataView(prefix.buffer).setUint32(0, claimed - 4)
    const p = new FrameParser({ maxFrameBytes: claimed })
    const before = process.memoryUsage().arrayBuffers
    p.push(prefix)
    p.push(new Uint8Array(1024 * 1024))
    expect(p.nextFrame()).toBeUndefined()
    expect(p.bufferedBytes).toBe(1024 * 1024 + 8)
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * 1024 * 1024)
    p.push(new Uint8Array(claimed / 2))
    expect(p.nextFrame()).toBeUndefined()
    expect(process.memoryUsage().arrayBuffers - before).toBeGreaterThanOrEqual(claimed)
  })
})

describe('frames kept as the pieces they arrived in', () => {
  it('hands over the head and the body pieces as views, never joined, and never allocates the claimed length', () => {
    const body = new Uint8Array(300_000).map((_, i) => i % 251)
    const frame = encodeFrame({ kind: 'chunk', offset: 0, size: 300_000 }, body)
    const p = new FrameParser({ maxFrameBytes: 1 << 20 }, { bodyParts: true })
    const pieces: Uint8Array[] = []
    for (let at = 0; at < frame.byteLength; at += 65_536) pieces.push(frame.slice(at, at + 65_536))
    const before = process.memoryUsage().arrayBuffers
    for (const piece of pieces) p.push(piece)
    const f = p.nextFrame()!
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 1024)
    expect(f.bytes.byteLength).toBe(frame.byteLength - body.byteLength)
    expect(decodeFrameHead(f.bytes, body.byteLength, { maxFrameBytes: 1 << 20 })).toEqual({ kind: 'chunk', offset: 0, size: 300_000 })
    expect(Buffer.concat(f.bodyParts!).equals(body)).toBe(true)
    // Views of what was pushed, not copies.
    expect(f.bodyParts!.slice(1).map(b => b.buffer)).toEqual(pieces.slice(1).map(b => b.buffer))
  })

  it('refuses a header length that runs past the frame as soon as it arrives', () => {
    const p = new FrameParser({ maxFrameBytes: 1 << 20 }, { bodyParts: true })
    const head = new Uint8Array(8)
    new DataView(head.buffer).setUint32(0, 1000)
    new DataView(head.buffer).setUint32(4, 2000)
    p.push(head)
    expect(() => p.nextFrame()).toThrow(expect.objectContaining({ name: 'FrameDecodeError', message: 'frame header of 2000 bytes runs past the frame end (1004 bytes)' }))
  })
})

describe('memory sink told the size', () => {
  it('writes into one buffer and hands it over without a copy; a claim past its cap is ignored', async () => {
    const sink = memorySink()
    sink.reserve!(10)
    await sink.write(0, new Uint8Array([1, 2, 3, 4]))
    await sink.write(4, new Uint8Array([5, 6, 7, 8, 9, 10]))
    const a = sink.bytes()
    expect([...a]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    expect(sink.bytes()).toBe(a)
    const big = memorySink()
    big.reserve!(2 ** 40)
    await big.write(0, new Uint8Array([7]))
    expect([...big.bytes()]).toEqual([7])
  })

  it('keeps every byte when the peer sends more than it announced', async () => {
    const sink = memorySink()
    sink.reserve!(3)
    await sink.write(0, new Uint8Array([1, 2]))
    await sink.write(2, new Uint8Array([3, 4, 5]))
    expect([...sink.bytes()]).toEqual([1, 2, 3, 4, 5])
    expect(await sink.size()).toBe(5)
  })
})

describe('large updates on loopback', () => {
  const dir = tempDir('fm-pipe-')
  let pair: UpdatePair
  let a: SiteHost, b: SiteHost
  let sender: UpdateService
  let misbehaved: string[]
  const received: ReceivedUpdate[] = []

  beforeAll(async () => {
    pair = await updatePair(dir.path, (u) => { received.push(u); return { accepted: true } })
    ;({ a, b, sender, misbehaved } = pair)
  })

  afterAll(async () => {
    await pair.stop()
    dir.remove()
  })

  it('delivers 6 MB of f32 tensors sent from the caller arrays exactly, hashed on arrival', async () => {
    const map = tensors(5, [1 << 20, 500_000, 3])
    const ack = await sender.send(a.peerId, { round: 7, site: 'site-b', dtype: 'f32', tensors: map })
    expect(ack).toEqual({ kind: 'ack', round: 7, accepted: true })
    const got = received.at(-1)!
    expect(got.header.bodyHash).toBe(encodeTensorParts(map, { dtype: 'f32' }).hash)
    for (const [name, t] of map) expect(Buffer.from(got.tensors.get(name)!.data.buffer, got.tensors.get(name)!.data.byteOffset, t.data.byteLength).equals(Buffer.from(t.data.buffer))).toBe(true)
  })

  it('refuses a 6 MB body whose bytes do not match the hash it carries, and the sender loses its connection', async () => {
    const body = encodeTensors(tensors(6, [1_500_000]), { dtype: 'f32' })
    body[body.byteLength - 1]! ^= 0x40
    const before = received.length
    await expect(sender.send(a.peerId, { round: 8, site: 'site-b', dtype: 'f32', body })).rejects.toThrow(expect.objectContaining({ name: 'RemoteError', message: expect.stringContaining('ERR_TENSOR_CHECKSUM') }))
    await waitFor('the receiver flags the sender', () => misbehaved.includes('TensorChecksumError'))
    await waitFor('the connection is closed', () => !a.connectedPeers().includes(b.peerId))
    expect(received.length).toBe(before)
  })
})
