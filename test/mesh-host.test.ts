/**
 * The mesh on real libp2p over loopback: three members form a mesh and
 * exchange hellos, updates and commits; a node with the wrong federation key,
 * or none, cannot connect; a stranger gets no stream; a tampered body costs
 * the sender its connection while the others are still served.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSeededRandom } from '../coordinator/components.ts'
import type { SiteIdentity } from '../node/identity.ts'
import { generatePsk, type SiteHost } from '../node/mesh/host.ts'
import { createMembership, type Membership } from '../node/mesh/membership.ts'
import { createModelService, type ModelService } from '../node/mesh/model.ts'
import { createUpdateService, type ReceivedUpdate, type UpdateService } from '../node/mesh/update.ts'
import { UPDATE_PROTOCOL } from '../protocols/update/constants.ts'
import { MEMBERSHIP_PROTOCOL } from '../protocols/membership/constants.ts'
import { encodeTensors, tensorBodyHash } from '../protocols/tensor-codec/index.ts'
import type { TensorMap } from '../protocols/tensors.ts'
import { host, identities, recordingLogger, tempDir, waitFor } from './mesh-helpers.ts'

const SPEC = 'c0ffee'.padEnd(64, '0')
const PROTOCOLS = ['/forgemesh/membership/1.0.0', '/forgemesh/update/1.0.0', '/forgemesh/model/1.0.0']

function tensors (seed: number): TensorMap {
  const rng = createSeededRandom(seed)
  return new Map([
    ['router.w', { shape: [8, 4], data: Float32Array.from({ length: 32 }, () => rng.normal()) }],
    ['trunk.w', { shape: [64, 32], data: Float32Array.from({ length: 2048 }, () => rng.normal()) }]
  ])
}

interface Site { id: SiteIdentity, host: SiteHost, membership: Membership, updates: UpdateService, model: ModelService, log: ReturnType<typeof recordingLogger>, tapped: Buffer[] }

describe('site mesh on loopback', () => {
  const dir = tempDir('fm-mesh-')
  const psk = generatePsk()
  let ids: SiteIdentity[]
  let a: Site, b: Site, c: Site
  const received: ReceivedUpdate[] = []
  let allowlist: string[]

  const site = async (id: SiteIdentity, name: string, bootstrap: string[], spec = SPEC): Promise<Site> => {
    const log = recordingLogger()
    const tapped: Buffer[] = []
    const h = host(id, { psk, allowlist, bootstrap }, { logger: log, wireTap: (_d, _p, _proto, bytes) => { tapped.push(Buffer.from(bytes)) } })
    const membership = createMembership({ hello: { site: name, roles: ['member'], capabilities: ['train'], modelSpecHash: spec, protocols: PROTOCOLS } }, { host: h, logger: log })
    const updates = createUpdateService({}, { host: h, logger: log })
    const model = createModelService({}, { host: h, logger: log })
    await membership.start()
    await updates.start()
    await model.start()
    await h.start()
    return { id, host: h, membership, updates, model, log, tapped }
  }

  beforeAll(async () => {
    ids = await identities(dir.path, 7) // a, b, c members; d wrong key; e no key; f other model; s stranger
    allowlist = ids.slice(0, 6).map(i => i.peerId)
    a = await site(ids[0]!, 'site-a', [])
    b = await site(ids[1]!, 'site-b', [a.host.multiaddrs()[0]!])
    c = await site(ids[2]!, 'site-c', [a.host.multiaddrs()[0]!, b.host.multiaddrs()[0]!])
    a.updates.onUpdate((u) => {
      received.push(u)
      return { accepted: true }
    })
  })

  afterAll(async () => {
    for (const s of [a, b, c]) await s?.host.stop()
    dir.remove()
  })

  it('forms a mesh: every member connects to and welcomes the other two', async () => {
    for (const s of [a, b, c]) {
      await waitFor(`${s.host.peerId} to admit two members`, () => s.membership.members().size === 2)
      const others = [a, b, c].filter(o => o !== s).map(o => o.host.peerId).sort()
      expect([...s.membership.members().keys()].sort()).toEqual(others)
      expect(s.host.connectedPeers().sort()).toEqual(others)
    }
    expect(a.membership.members().get(b.host.peerId)).toEqual({ kind: 'hello', site: 'site-b', roles: ['member'], capabilities: ['train'], modelSpecHash: SPEC, protocols: PROTOCOLS })
  })

  it('carries updates to the aggregator and commits back, byte-exact, through the wire tap', async () => {
    const tb = tensors(2)
    const ack = await b.updates.send(a.host.peerId, { round: 3, site: 'site-b', dtype: 'f32', tensors: tb, numSamples: 640, meta: { canary: 'CANARY-7f3a' } })
    expect(ack).toEqual({ kind: 'ack', round: 3, accepted: true })
    const ackC = await c.updates.send(a.host.peerId, { round: 3, site: 'site-c', dtype: 'int8', tensors: tensors(3) })
    expect(ackC.accepted).toBe(true)
    expect(received.map(u => [u.peerId, u.header.site, u.header.round])).toEqual([[b.host.peerId, 'site-b', 3], [c.host.peerId, 'site-c', 3]])
    expect(received[0]!.tensors.get('trunk.w')!.data).toEqual(tb.get('trunk.w')!.data)
    expect(received[0]!.header.meta).toEqual({ canary: 'CANARY-7f3a' })
    // The tap saw the plaintext frame on both ends.
    expect(Buffer.concat(b.tapped).includes('CANARY-7f3a')).toBe(true)
    expect(Buffer.concat(a.tapped).includes('CANARY-7f3a')).toBe(true)
    expect(a.host.traffic().get(b.host.peerId)!.bytesIn).toBeGreaterThan(2048 * 4)

    // The aggregator commits; a member that missed the announce fetches the round.
    const body = encodeTensors(tensors(4), { dtype: 'f32' })
    const info = { round: 3, hash: tensorBodyHash(body), bytes: body.byteLength, dtype: 'f32' as const }
    a.model.provideCommits((round) => (round === 3 || round === 'latest' ? { info, body } : undefined))
    const seen: number[] = []
    b.model.onAnnounce(({ info: i, tensors: t }) => { seen.push(i.round, t!.size); return { accepted: true } })
    expect(await a.model.announce(b.host.peerId, { info, body })).toEqual({ accepted: true })
    expect(seen).toEqual([3, 2])
    const fetched = await c.model.fetchRound(a.host.peerId, 'latest')
    expect(fetched!.info).toEqual(info)
    expect(fetched!.tensors!.get('router.w')!.data).toEqual(tensors(4).get('router.w')!.data)
    expect(await c.model.fetchRound(a.host.peerId, 9)).toBeUndefined()
  })

  it('refuses to start with no federation key unless insecureOpenMesh is explicit', async () => {
    const h = host(ids[4]!, { allowlist })
    await expect(h.start()).rejects.toMatchObject({ name: 'InsecureMeshError', message: 'no federation key (pnet PSK) configured: set the key file, or insecureOpenMesh: true for a local experiment' })
    expect(h.isStarted()).toBe(false)
  })

  it('keeps out a node with the wrong key and one with none: no connection, no handler run', async () => {
    let ran = 0
    await a.host.handle('/forgemesh/probe/1.0.0', () => { ran++; return { header: { kind: 'ok' } } }, { maxFrameBytes: 1024 })
    const wrong = host(ids[3]!, { psk: generatePsk(), allowlist, bootstrap: [a.host.multiaddrs()[0]!] })
    const open = host(ids[4]!, { insecureOpenMesh: true, allowlist, bootstrap: [a.host.multiaddrs()[0]!] }, { logger: recordingLogger() })
    try {
      await wrong.start()
      await open.start()
      for (const outsider of [wrong, open]) {
        await expect(outsider.request(a.host.peerId, '/forgemesh/probe/1.0.0', { header: { kind: 'probe' } }, { timeoutMs: 3_000 })).rejects.toMatchObject({ name: expect.stringMatching(/^(MeshStreamError|MeshRequestTimeoutError)$/) })
        expect(outsider.connectedPeers()).toEqual([])
      }
      expect(a.host.connectedPeers()).not.toContain(ids[3]!.peerId)
      expect(a.host.connectedPeers()).not.toContain(ids[4]!.peerId)
      expect(ran).toBe(0)
      // The member path still works, so the probe handler itself was reachable.
      expect((await b.host.request(a.host.peerId, '/forgemesh/probe/1.0.0', { header: { kind: 'probe' } })).header).toEqual({ kind: 'ok' })
      expect(ran).toBe(1)
    } finally {
      await wrong.stop()
      await open.stop()
    }
  })

  it('gives a stranger with the right key no stream, and reports the refusal', async () => {
    const refused: Array<{ peerId: string, reason: string, direction: string }> = []
    const off = a.host.on('peer:refused', (e) => { refused.push(e) })
    let ran = 0
    await a.host.handle('/forgemesh/probe2/1.0.0', () => { ran++; return { header: { kind: 'ok' } } }, { maxFrameBytes: 1024 })
    const stranger = host(ids[6]!, { psk, allowlist: [a.host.peerId], bootstrap: [a.host.multiaddrs()[0]!] })
    try {
      await stranger.start()
      await expect(stranger.request(a.host.peerId, '/forgemesh/probe2/1.0.0', { header: { kind: 'probe' } }, { timeoutMs: 3_000 })).rejects.toMatchObject({ name: expect.stringMatching(/^(MeshStreamError|MeshRequestTimeoutError)$/) })
      await waitFor('the refusal event', () => refused.length > 0)
      expect(refused[0]).toMatchObject({ peerId: ids[6]!.peerId, reason: 'not on the allowlist', direction: 'inbound' })
      expect(ran).toBe(0)
      expect(a.host.connectedPeers()).not.toContain(ids[6]!.peerId)
    } finally {
      off()
      await stranger.stop()
    }
  })

  it('closes the connection of a peer that sends a tampered body, names the error, and keeps serving the others', async () => {
    const misbehaved: Array<{ peerId: string, error: Error }> = []
    const gone: string[] = []
    const offs = [a.host.on('peer:misbehaved', (e) => { misbehaved.push(e) }), a.host.on('peer:disconnect', (e) => { gone.push(e.peerId) })]
    const before = received.length
    const body = encodeTensors(tensors(5), { dtype: 'f32' })
    body[body.length - 100]! ^= 0x40 // one bit flipped in the data; the hash inside still claims the original
    try {
      const err = await b.updates.send(a.host.peerId, { round: 4, site: 'site-b', dtype: 'f32', body }).then(() => undefined, (e: Error) => e)
      expect(err).toMatchObject({ name: 'RemoteError', remoteCode: 'ERR_TENSOR_CHECKSUM', message: expect.stringContaining('tensor body fails its checksum') })
      await waitFor('b to be cut off', () => gone.includes(b.host.peerId))
      expect(misbehaved.map(m => [m.peerId, m.error.name])).toEqual([[b.host.peerId, 'TensorChecksumError']])
      expect(misbehaved[0]!.error.message).toContain('tensor body fails its checksum')
      expect(received.length).toBe(before)
      // c is still served while b is away ...
      expect((await c.updates.send(a.host.peerId, { round: 4, site: 'site-c', dtype: 'f16', tensors: tensors(6) })).accepted).toBe(true)
      // ... and b, a member that was lost, is redialled with backoff and comes back.
      await waitFor('b to reconnect', () => a.host.connectedPeers().includes(b.host.peerId))
      expect((await b.updates.send(a.host.peerId, { round: 4, site: 'site-b', dtype: 'f32', tensors: tensors(7) })).accepted).toBe(true)
    } finally {
      for (const off of offs) off()
    }
  })

  it('refuses a member whose model spec differs, and both sides log why', async () => {
    const f = await site(ids[5]!, 'site-f', [a.host.multiaddrs()[0]!], 'f'.repeat(64))
    try {
      const refusedAt = (s: Site): unknown[] => s.log.records.filter(r => r.event === 'member.refused').map(r => r.fields)
      await waitFor('both sides to log the refusal', () => refusedAt(a).length > 0 && refusedAt(f).length > 0)
      expect(refusedAt(a)[0]).toMatchObject({ peer: f.host.peerId, code: 'model-spec-mismatch', reason: expect.stringContaining("site 'site-f' runs model spec ffffffffffff…") })
      expect(refusedAt(f)[0]).toMatchObject({ peer: a.host.peerId, code: 'model-spec-mismatch' })
      await waitFor('f to be disconnected', () => !a.host.connectedPeers().includes(f.host.peerId))
      expect(a.membership.members().has(f.host.peerId)).toBe(false)
      await expect(f.host.request(a.host.peerId, MEMBERSHIP_PROTOCOL, { header: { kind: 'x' } }, { timeoutMs: 3_000 })).rejects.toBeDefined()
    } finally {
      await f.host.stop()
    }
  })

  it('answers a malformed header with a named error that names the field', async () => {
    await waitFor('b to be connected', () => a.host.connectedPeers().includes(b.host.peerId))
    const err = await b.host.request(a.host.peerId, UPDATE_PROTOCOL, { header: { kind: 'update', round: -1 } }).then(() => undefined, (e: Error) => e)
    expect(err).toMatchObject({ name: 'RemoteError', remoteCode: 'ERR_FRAME_HEADER', message: expect.stringContaining('frame header rejected: round:') })
  })
})
