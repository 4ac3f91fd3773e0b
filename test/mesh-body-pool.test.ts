/**
 * Receive buffers reused across updates: a buffer goes back to the pool once,
 * only when handed back, and the next update of that size lands in it with
 * every check intact (exact tensors, tampered bodies refused and their sender
 * cut off, a claimed length not allocated before half of it has arrived).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createManualClock, createSeededRandom } from '../coordinator/components.ts'
import { createBodyPool } from '../node/mesh/body-pool.ts'
import type { SiteHost } from '../node/mesh/host.ts'
import type { ReceivedUpdate, UpdateService } from '../node/mesh/update.ts'
import { encodeFrame, FrameParser } from '../protocols/frame/frame.ts'
import { encodeTensors } from '../protocols/tensor-codec/index.ts'
import { UPDATE_PROTOCOL_1_0 } from '../protocols/update/constants.ts'
import { UpdateAck } from '../protocols/update/update.ts'
import { flattenTensors, type TensorMap } from '../protocols/tensors.ts'
import { tempDir, updatePair, waitFor, type UpdatePair } from './mesh-helpers.ts'

const MiB = 1024 * 1024

function tensors (seed: number, sizes: number[]): TensorMap {
  const rng = createSeededRandom(seed)
  return new Map(sizes.map((n, i) => [`t${i}`, { shape: [n], data: Float32Array.from({ length: n }, () => rng.normal()) }]))
}

describe('body pool', () => {
  it('lends fresh memory, takes it back once, and lends the same buffer again', () => {
    const pool = createBodyPool({})
    expect(pool.take(2 * MiB)).toBeUndefined()
    const a = pool.allocate(2 * MiB)
    expect(a.byteLength).toBe(2 * MiB)
    expect(pool.lent(a)).toBe(true)
    pool.give(a)
    expect(pool.lent(a)).toBe(false)
    // 64 KiB of room for a longer header next round.
    expect(pool.stats()).toEqual({ idle: 1, idleBytes: 2 * MiB + 65_536 })
    const b = pool.take(2 * MiB + 65_536)!
    expect(b.buffer === a.buffer).toBe(true)
    expect(b.byteLength).toBe(2 * MiB + 65_536)
    expect(pool.stats()).toEqual({ idle: 0, idleBytes: 0 })
    expect(pool.take(2 * MiB)).toBeUndefined()
  })

  it('a buffer handed back twice throws BodyReleasedError; one it never lent, BodyPoolError', () => {
    const pool = createBodyPool({})
    const a = pool.allocate(MiB)
    pool.give(a)
    expect(() => { pool.give(a) }).toThrow(expect.objectContaining({ name: 'BodyReleasedError', message: `a receive buffer of ${MiB + 65_536} bytes was handed back twice` }))
    expect(() => { pool.give(new Uint8Array(MiB)) }).toThrow(expect.objectContaining({ name: 'BodyPoolError', message: `a buffer of ${MiB} bytes was handed back to a pool that never lent it` }))
    expect(() => createBodyPool({ maxBuffers: -1 })).toThrow(expect.objectContaining({ name: 'BodyPoolError' }))
  })

  it('holds at most maxBuffers idle buffers, drops the longest idle first, and drops idle ones after idleMs', () => {
    const clock = createManualClock(0)
    const pool = createBodyPool({ maxBuffers: 2, idleMs: 1000 }, { clock })
    const bufs = [pool.allocate(MiB), pool.allocate(MiB), pool.allocate(MiB)]
    for (const b of bufs) { pool.give(b); clock.advance(10) }
    expect(pool.stats()).toEqual({ idle: 2, idleBytes: 2 * (MiB + 65_536) })
    // The dropped one is gone for good: handing it back again is still a second hand-back.
    expect(() => { pool.give(bufs[0]!) }).toThrow(expect.objectContaining({ name: 'BodyReleasedError' }))
    const again = [pool.take(MiB)!.buffer, pool.take(MiB)!.buffer]
    expect(again.includes(bufs[1]!.buffer) && again.includes(bufs[2]!.buffer)).toBe(true)
    const c = pool.allocate(MiB)
    pool.give(c)
    clock.advance(999)
    pool.sweep()
    expect(pool.stats().idle).toBe(1)
    clock.advance(1)
    pool.sweep()
    expect(pool.stats()).toEqual({ idle: 0, idleBytes: 0 })
    pool.clear()
  })

  it('does not pool small frames, nor lend a buffer more than twice the size asked', () => {
    const pool = createBodyPool({ minBytes: MiB })
    const small = pool.allocate(MiB - 1)
    expect(pool.lent(small)).toBe(false)
    const big = pool.allocate(10 * MiB)
    pool.give(big)
    expect(pool.take(5 * MiB)).toBeUndefined()
    expect(pool.take(6 * MiB)!.buffer === big.buffer).toBe(true)
  })
})

describe('frame parser with lent buffers', () => {
  const body = encodeTensors(tensors(1, [300_000]), { dtype: 'f32' })
  const frame = encodeFrame({ kind: 'update' }, body)

  it('assembles into an idle buffer from the first byte, and asks for fresh memory only at the halfway point', () => {
    for (const idle of [true, false]) {
      const pool = createBodyPool({ minBytes: 64 * 1024 })
      if (idle) pool.give(pool.allocate(frame.byteLength))
      const asked: Array<{ what: string, at: number }> = []
      let fed = 0
      const p = new FrameParser({ maxFrameBytes: 4 * MiB })
      p.assembleInto({
        take: (n) => { asked.push({ what: 'take', at: fed }); return pool.take(n) },
        allocate: (n) => { asked.push({ what: 'allocate', at: fed }); return pool.allocate(n) }
      })
      let out: Uint8Array | undefined
      for (let off = 0; off < frame.byteLength; off += 65_536) {
        const piece = frame.subarray(off, off + 65_536)
        fed += piece.byteLength
        p.push(piece)
        out = p.next() ?? out
      }
      expect(Buffer.from(out!).equals(Buffer.from(frame))).toBe(true)
      expect(pool.lent(out!)).toBe(true)
      if (idle) expect(asked).toEqual([{ what: 'take', at: 65_536 }])
      else {
        expect(asked.map(a => a.what)).toEqual(['take', 'allocate'])
        expect(2 * asked[1]!.at).toBeGreaterThanOrEqual(frame.byteLength)
      }
    }
  })
})

describe('updates into reused receive buffers, on loopback', () => {
  const dir = tempDir('fm-pool-')
  let pair: UpdatePair
  let a: SiteHost, b: SiteHost
  let sender: UpdateService, receiver: UpdateService
  let misbehaved: string[]
  /** What each update carried, copied out before release. */
  const got: Array<{ round: number, buffer: ArrayBufferLike, flat: Float32Array, tensors: TensorMap }> = []
  let releaseTwice: unknown

  beforeAll(async () => {
    pair = await updatePair(dir.path, (u: ReceivedUpdate) => {
      const flat = flattenTensors(u.tensors)
      got.push({ round: u.header.round, buffer: u.tensors.get('t0')!.data.buffer, flat, tensors: u.tensors })
      // Round 3's consumer keeps its views: it does not release.
      if (u.header.round !== 3) u.release()
      if (u.header.round === 4) {
        try { u.release() } catch (err) { releaseTwice = err }
      }
      return { accepted: true }
    })
    ;({ a, b, sender, receiver, misbehaved } = pair)
  })

  afterAll(async () => {
    await pair.stop()
    dir.remove()
  })

  const sizes = [1 << 20, 300_000, 5]
  const send = async (round: number, seed: number): Promise<TensorMap> => {
    const map = tensors(seed, sizes)
    expect(await sender.send(a.peerId, { round, site: 'site-b', dtype: 'f32', tensors: map })).toEqual({ kind: 'ack', round, accepted: true })
    return map
  }

  it('two updates in a row land in one buffer and both decode to the exact tensors sent', async () => {
    const first = await send(1, 11)
    const second = await send(2, 12)
    const [g1, g2] = got.slice(-2)
    expect(g2!.buffer === g1!.buffer).toBe(true)
    expect(Buffer.from(g1!.flat.buffer).equals(Buffer.from(flattenTensors(first).buffer))).toBe(true)
    expect(Buffer.from(g2!.flat.buffer).equals(Buffer.from(flattenTensors(second).buffer))).toBe(true)
    expect(receiver.pool.stats().idle).toBe(1)
  })

  it('an update its consumer keeps is never reused: the next one lands in other memory', async () => {
    const kept = await send(3, 13)
    const next = await send(4, 14)
    const [g3, g4] = got.slice(-2)
    expect(g4!.buffer !== g3!.buffer).toBe(true)
    // The kept tensors are views of their buffer, and still hold round 3's values.
    expect(g3!.tensors.get('t0')!.data.buffer === g3!.buffer).toBe(true)
    expect(Buffer.from(flattenTensors(g3!.tensors).buffer).equals(Buffer.from(flattenTensors(kept).buffer))).toBe(true)
    expect(Buffer.from(g4!.flat.buffer).equals(Buffer.from(flattenTensors(next).buffer))).toBe(true)
    expect(releaseTwice).toEqual(expect.objectContaining({ name: 'BodyReleasedError', message: 'the update for round 4 was released twice' }))
  })

  it('a 1.0.0 update lands in the pool too', async () => {
    const map = tensors(15, sizes)
    const body = encodeTensors(map, { dtype: 'f32' })
    const idleBefore = receiver.pool.stats().idle
    const res = await b.request(a.peerId, UPDATE_PROTOCOL_1_0, { header: { kind: 'update', round: 5, site: 'site-b', dtype: 'f32', bodyHash: Buffer.from(body.subarray(4, 36)).toString('hex') }, body }, { schema: UpdateAck })
    expect(res.header).toEqual({ kind: 'ack', round: 5, accepted: true })
    expect(got.at(-1)!.round).toBe(5)
    // Round 4's buffer, handed back: its headroom fits 1.0.0's longer header.
    expect(got.at(-1)!.buffer === got.at(-2)!.buffer).toBe(true)
    expect(Buffer.from(got.at(-1)!.flat.buffer).equals(Buffer.from(flattenTensors(map).buffer))).toBe(true)
    expect(receiver.pool.stats().idle).toBe(idleBefore)
  })

  it('a tampered body is refused before decode, its buffer goes back to the pool, and the sender is cut off', async () => {
    const body = encodeTensors(tensors(16, sizes), { dtype: 'f32' })
    body[body.byteLength - 1]! ^= 0x40
    const before = got.length
    const idleBefore = receiver.pool.stats().idle
    await expect(sender.send(a.peerId, { round: 6, site: 'site-b', dtype: 'f32', body })).rejects.toThrow(expect.objectContaining({ name: 'RemoteError', message: expect.stringContaining('ERR_TENSOR_CHECKSUM') }))
    await waitFor('the receiver flags the sender', () => misbehaved.includes('TensorChecksumError'))
    await waitFor('the connection is closed', () => !a.connectedPeers().includes(b.peerId))
    expect(got.length).toBe(before)
    expect(receiver.pool.stats().idle).toBe(idleBefore)
  })
})
