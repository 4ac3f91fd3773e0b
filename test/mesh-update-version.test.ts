/**
 * Update protocol 1.1.0: the body's sha256 trails the body (the sender hashes
 * while it writes), the receiver still refuses a body that does not match it
 * and cuts the sender off, and 1.0.0 still works both ways (an old sender,
 * and an old receiver that only speaks 1.0.0).
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSeededRandom } from '../coordinator/components.ts'
import type { SiteIdentity } from '../node/identity.ts'
import { generatePsk, type SiteHost } from '../node/mesh/host.ts'
import { createUpdateService, decodeUpdateBody, type ReceivedUpdate, type UpdateService } from '../node/mesh/update.ts'
import { decodeFrameRaw, FrameParser } from '../protocols/frame/frame.ts'
import { encodeTensorParts, encodeTensorPartsUnhashed, encodeTensors, tensorBodyHash } from '../protocols/tensor-codec/index.ts'
import type { TensorMap } from '../protocols/tensors.ts'
import { UPDATE_MAX_FRAME_BYTES, UPDATE_PROTOCOL, UPDATE_PROTOCOL_1_0 } from '../protocols/update/constants.ts'
import { UpdateAck, UpdateRequest } from '../protocols/update/update.ts'
import { host, identities, recordingLogger, tempDir, waitFor } from './mesh-helpers.ts'

function tensors (seed: number, sizes: number[]): TensorMap {
  const rng = createSeededRandom(seed)
  return new Map(sizes.map((n, i) => [`t${i}`, { shape: [n], data: Float32Array.from({ length: n }, () => rng.normal()) }]))
}

const sameBytes = (a: Float32Array, b: Float32Array): boolean =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))

/** Frames (header + body) cut out of the bytes a tap saw, in order. */
function framesOf (chunks: Uint8Array[]): Array<{ header: Record<string, unknown>, body?: Uint8Array }> {
  const p = new FrameParser({ maxFrameBytes: UPDATE_MAX_FRAME_BYTES })
  for (const c of chunks) p.push(Uint8Array.from(c))
  const out: Array<{ header: Record<string, unknown>, body?: Uint8Array }> = []
  for (let f = p.next(); f !== undefined; f = p.next()) out.push(decodeFrameRaw(f, { maxFrameBytes: UPDATE_MAX_FRAME_BYTES }) as { header: Record<string, unknown>, body?: Uint8Array })
  return out
}

describe('update protocol 1.1.0 on loopback', () => {
  const dir = tempDir('fm-upd11-')
  const psk = generatePsk()
  let ids: SiteIdentity[]
  let a: SiteHost, b: SiteHost, old: SiteHost
  let receiver: UpdateService, sender: UpdateService
  const senderLog = recordingLogger()
  const receiverLog = recordingLogger()
  const received: ReceivedUpdate[] = []
  const oldReceived: Array<Omit<ReceivedUpdate, 'release'>> = []
  const misbehaved: Array<{ peerId: string, name: string }> = []
  const wire: Array<{ protocol: string, bytes: Uint8Array }> = []
  const held = Promise.withResolvers<void>()

  beforeAll(async () => {
    ids = await identities(dir.path, 6)
    const allowlist = ids.map(i => i.peerId)
    a = host(ids[0]!, { psk, allowlist })
    receiver = createUpdateService({}, { host: a, logger: receiverLog })
    receiver.onUpdate(async (u) => {
      if (u.header.round === 99) await held.promise // an aggregator that takes its time
      received.push(u)
      return { accepted: true }
    })
    await receiver.start()
    await a.start()
    a.on('peer:misbehaved', (e) => { misbehaved.push({ peerId: e.peerId, name: e.error.name }) })
    // A site of the previous release: it speaks update 1.0.0 only.
    old = host(ids[2]!, { psk, allowlist, bootstrap: [a.multiaddrs()[0]!] })
    await old.handle(UPDATE_PROTOCOL_1_0, async (frame, ctx) => {
      oldReceived.push({ peerId: ctx.peerId, header: frame.header, tensors: decodeUpdateBody(frame.header, frame.body, UPDATE_MAX_FRAME_BYTES, await frame.bodyDigest) })
      return { header: { kind: 'ack', round: frame.header.round, accepted: true } satisfies UpdateAck }
    }, { maxFrameBytes: UPDATE_MAX_FRAME_BYTES, schema: UpdateRequest })
    await old.start()
    b = host(ids[1]!, { psk, allowlist, bootstrap: [a.multiaddrs()[0]!, old.multiaddrs()[0]!] }, {
      logger: senderLog,
      wireTap: (direction, _peer, protocol, bytes) => { if (direction === 'out' && protocol.startsWith('/forgemesh/update/')) wire.push({ protocol, bytes: Uint8Array.from(bytes) }) }
    })
    sender = createUpdateService({}, { host: b, logger: senderLog })
    await b.start()
    await waitFor('b connected to a and to the old site, the old site to a', () => b.connectedPeers().includes(a.peerId) && b.connectedPeers().includes(old.peerId) && old.connectedPeers().includes(a.peerId))
  })

  afterAll(async () => {
    await b.stop()
    await old.stop()
    await a.stop()
    dir.remove()
  })

  it('sends the body with a zero hash field and its sha256 in a digest frame after it; the receiver verifies and gets the exact tensors', async () => {
    wire.length = 0
    const map = tensors(11, [600_000, 3, 1 << 18])
    const ack = await sender.send(a.peerId, { round: 2, site: 'site-b', dtype: 'f32', tensors: map })
    expect(ack).toEqual({ kind: 'ack', round: 2, accepted: true })
    const hash = encodeTensorParts(map, { dtype: 'f32' }).hash
    expect(wire.every(w => w.protocol === UPDATE_PROTOCOL)).toBe(true)
    const frames = framesOf(wire.map(w => w.bytes))
    expect(frames.map(f => f.header.kind)).toEqual(['update', 'digest'])
    expect(frames[0]!.header.bodyHash).toBeUndefined()
    expect(Buffer.from(frames[0]!.body!.subarray(4, 36)).equals(Buffer.alloc(32))).toBe(true)
    expect(frames[1]!.header).toEqual({ kind: 'digest', bodyHash: hash })
    const got = received.at(-1)!
    expect(got.header).toMatchObject({ kind: 'update', round: 2, site: 'site-b', dtype: 'f32', bodyHash: hash })
    for (const [name, t] of map) expect(sameBytes(got.tensors.get(name)!.data, t.data)).toBe(true)
  })

  it('sends a body encoded beforehand as one frame naming its hash: nothing hashed while sending, no digest frame', async () => {
    wire.length = 0
    const map = tensors(12, [1_500_000, 7]) // 6 MB: the size that would go to the hash worker
    const body = encodeTensors(map, { dtype: 'f32' })
    const hashedBefore = senderLog.records.filter(r => r.event === 'update.hashed').length
    const ack = await sender.send(a.peerId, { round: 3, site: 'site-b', dtype: 'f32', body })
    expect(ack).toEqual({ kind: 'ack', round: 3, accepted: true })
    const frames = framesOf(wire.map(w => w.bytes))
    expect(frames.map(f => f.header.kind)).toEqual(['update'])
    expect(frames[0]!.header.bodyHash).toBe(encodeTensorParts(map, { dtype: 'f32' }).hash)
    expect(senderLog.records.filter(r => r.event === 'update.hashed')).toHaveLength(hashedBefore)
    const got = received.at(-1)!
    expect(got.header.round).toBe(3)
    for (const [name, t] of map) expect(sameBytes(got.tensors.get(name)!.data, t.data)).toBe(true)
  })

  it('keeps the caller\'s timeout and signal: no ack in time is MeshRequestTimeoutError, an abort rejects with its reason', async () => {
    const map = tensors(17, [1000])
    await expect(sender.send(a.peerId, { round: 99, site: 'site-b', dtype: 'f32', tensors: map }, { timeoutMs: 300 }))
      .rejects.toMatchObject({ name: 'MeshRequestTimeoutError', message: `${UPDATE_PROTOCOL} request to ${a.peerId} got no answer within 300 ms` })
    const ctl = new AbortController()
    const sent = sender.send(a.peerId, { round: 99, site: 'site-b', dtype: 'f32', tensors: map }, { signal: ctl.signal })
    ctl.abort(new Error('round abandoned'))
    await expect(sent).rejects.toThrow('round abandoned')
    held.resolve()
    // The connection survives both: the next update goes through.
    expect(await sender.send(a.peerId, { round: 9, site: 'site-b', dtype: 'f32', tensors: map })).toEqual({ kind: 'ack', round: 9, accepted: true })
  })

  it('int8 and f16 bodies trail their digest too and decode as encodeTensors would', async () => {
    const map = tensors(12, [5000, 77])
    for (const dtype of ['int8', 'f16'] as const) {
      await sender.send(a.peerId, { round: 3, site: 'site-b', dtype, tensors: map })
      const got = received.at(-1)!
      expect(got.header.bodyHash).toBe(tensorBodyHash(encodeTensors(map, { dtype })))
      expect(got.header.dtype).toBe(dtype)
      expect(got.tensors.get('t0')!.data.length).toBe(5000)
    }
  })

  it('speaks 1.0.0 to a site that does not speak 1.1.0, and remembers it', async () => {
    wire.length = 0
    const map = tensors(13, [1000, 20])
    for (const round of [4, 5]) {
      const ack = await sender.send(old.peerId, { round, site: 'site-b', dtype: 'f32', tensors: map })
      expect(ack).toEqual({ kind: 'ack', round, accepted: true })
    }
    expect(oldReceived.map(u => u.header.round)).toEqual([4, 5])
    for (const [name, t] of map) expect(sameBytes(oldReceived[1]!.tensors.get(name)!.data, t.data)).toBe(true)
    expect(new Set(wire.map(w => w.protocol))).toEqual(new Set([UPDATE_PROTOCOL_1_0]))
    expect(senderLog.records.filter(r => r.event === 'update.legacy-peer').map(r => r.fields)).toEqual([{ peer: old.peerId, protocol: UPDATE_PROTOCOL_1_0 }])

    // Once the connection drops, the peer may come back upgraded: 1.1.0 is tried first again.
    await b.libp2p()!.hangUp(peerIdFromString(old.peerId))
    await waitFor('b to reconnect to the old site', () => b.connectedPeers().includes(old.peerId))
    expect(await sender.send(old.peerId, { round: 6, site: 'site-b', dtype: 'f32', tensors: map })).toEqual({ kind: 'ack', round: 6, accepted: true })
    expect(senderLog.records.filter(r => r.event === 'update.legacy-peer')).toHaveLength(2)
  })

  it('still takes a 1.0.0 update from a site of the previous release', async () => {
    const map = tensors(14, [300])
    const body = encodeTensors(map, { dtype: 'f32' })
    const header: UpdateRequest = { kind: 'update', round: 6, site: 'site-old', dtype: 'f32', bodyHash: tensorBodyHash(body) }
    const res = await old.request(a.peerId, UPDATE_PROTOCOL_1_0, { header, body }, { schema: UpdateAck })
    expect(res.header).toEqual({ kind: 'ack', round: 6, accepted: true })
    expect(received.at(-1)!.header).toEqual(header)
    expect(sameBytes(received.at(-1)!.tensors.get('t0')!.data, map.get('t0')!.data)).toBe(true)
  })

  // 0.8 MB is hashed on the receiver's event loop, 8 MB on the process's hash worker (HASH_WORKER_MIN_BYTES).
  it.each([
    { values: 200_000, rogueIndex: 3, round: 7, on: 'event-loop' },
    { values: 2_000_000, rogueIndex: 5, round: 17, on: 'worker' }
  ])('refuses a body that does not match its trailing digest ($values floats, hashed on the $on), before the callback sees it, and cuts the sender off', async ({ values, rogueIndex, round, on }) => {
    const rogue = host(ids[rogueIndex]!, { psk, allowlist: ids.map(i => i.peerId), bootstrap: [a.multiaddrs()[0]!] })
    await rogue.start()
    try {
      await waitFor('the rogue connected', () => a.connectedPeers().includes(rogue.peerId))
      const map = tensors(15, [values])
      const { parts } = encodeTensorPartsUnhashed(map, { dtype: 'f32' })
      const digest = encodeTensorParts(map, { dtype: 'f32' }).hash
      const body = Buffer.concat(parts)
      body[body.byteLength - 3]! ^= 0x01 // altered after it was hashed
      const before = received.length
      const fs = await rogue.openStream(a.peerId, UPDATE_PROTOCOL, { maxFrameBytes: 4096 })
      await fs.write({ kind: 'update', round, site: 'rogue', dtype: 'f32' }, body)
      await fs.write({ kind: 'digest', bodyHash: digest })
      await fs.closeWrite()
      await expect(fs.read(UpdateAck)).rejects.toMatchObject({ name: 'RemoteError', remoteCode: 'ERR_TENSOR_CHECKSUM', message: expect.stringContaining(`is followed by digest ${digest} but its body hashes to`) })
      await waitFor('the receiver flags the rogue', () => misbehaved.some(m => m.peerId === rogue.peerId && m.name === 'TensorChecksumError'))
      await waitFor('the rogue is cut off', () => !a.connectedPeers().includes(rogue.peerId))
      expect(received.length).toBe(before)
      expect(receiverLog.records.filter(r => r.event === 'update.hashed' && r.fields?.['round'] === round).map(r => r.fields?.['on'])).toEqual([on])
      expect(a.connectedPeers()).toContain(b.peerId)
    } finally {
      await rogue.stop()
    }
  })

  it('refuses an update whose digest frame never comes, and cuts the sender off', async () => {
    const rogue = host(ids[4]!, { psk, allowlist: ids.map(i => i.peerId), bootstrap: [a.multiaddrs()[0]!] })
    await rogue.start()
    try {
      await waitFor('the rogue connected', () => a.connectedPeers().includes(rogue.peerId))
      const before = received.length
      const fs = await rogue.openStream(a.peerId, UPDATE_PROTOCOL, { maxFrameBytes: 4096 })
      await fs.write({ kind: 'update', round: 8, site: 'rogue', dtype: 'f32' }, encodeTensorPartsUnhashed(tensors(16, [10]), { dtype: 'f32' }).parts)
      await fs.closeWrite()
      await expect(fs.read(UpdateAck)).rejects.toMatchObject({ name: 'RemoteError', remoteCode: 'ERR_FRAME_DECODE', message: expect.stringContaining('update for round 8 ended before its digest frame') })
      await waitFor('the rogue is cut off', () => !a.connectedPeers().includes(rogue.peerId))
      expect(misbehaved.filter(m => m.peerId === rogue.peerId).map(m => m.name)).toEqual(['FrameDecodeError'])
      expect(received.length).toBe(before)
    } finally {
      await rogue.stop()
    }
  })
})
