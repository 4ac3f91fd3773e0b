/**
 * Expert exchange on real libp2p over loopback, each site with its own
 * LevelDB: publish -> announce -> fetch -> verify across members; a member
 * that joins late catches up; a misbehaving member's tampered, non-member and
 * wrong-spec artifacts are each rejected with their named error and assembly
 * goes on without them; a withdrawal is honoured by every member; downloads
 * are bounded and deduplicated by hash.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSilentLogger } from '../coordinator/components.ts'
import { Ack, AnnounceRequest } from '../protocols/experts-announce/experts-announce.ts'
import { EXPERTS_ANNOUNCE_MAX_FRAME_BYTES, EXPERTS_ANNOUNCE_PROTOCOL } from '../protocols/experts-announce/constants.ts'
import { createAuditLog, type AuditLog } from '../node/audit.ts'
import { systemClock } from '../node/components.ts'
import { buildArtifact, memberKeys, type VerifiedArtifact } from '../node/experts/artifact.ts'
import { assembleMoe } from '../node/experts/assemble.ts'
import { createExpertExchange, type ExchangeEvents, type ExpertExchange, type ExpertExchangeComponents } from '../node/experts/exchange.ts'
import { createExpertRegistry, type ExpertRegistry } from '../node/experts/registry.ts'
import { signRevocation } from '../node/experts/revocation.ts'
import type { SiteIdentity } from '../node/identity.ts'
import { generatePsk, type SiteHost } from '../node/mesh/host.ts'
import { fetchBlob, memoryBlobSource, serveBlobs } from '../node/mesh/transfer.ts'
import { selectBackend } from '../node/model/backend.ts'
import { initParams } from '../node/model/params.ts'
import { parseMoeSpec } from '../node/model/spec.ts'
import { openSiteStore, type SiteStore } from '../node/store.ts'
import { host, identities, tempDir, waitFor } from './mesh-helpers.ts'

const spec = parseMoeSpec({ inputDim: 8, width: 6, expertHidden: 5, experts: 3, topK: 1, classes: 4, seed: 7, routerInitScale: 3 })
const otherSpec = parseMoeSpec({ ...spec, classes: 5 })
const params = initParams(spec)
const quiet = createSilentLogger('forgemesh:experts')

interface Site {
  id: SiteIdentity
  host: SiteHost
  store: SiteStore
  registry: ExpertRegistry
  audit: AuditLog
  exchange: ExpertExchange
  events: { [K in keyof ExchangeEvents]: Array<ExchangeEvents[K]> }
}

async function makeSite (dir: string, id: SiteIdentity, init: { psk: Uint8Array, allowlist: string[], bootstrap: string[], syncOnConnect?: boolean }, extra: Partial<Pick<ExpertExchangeComponents, 'fetchBlob'>> = {}): Promise<Site> {
  const store = await openSiteStore(`${dir}/${id.peerId}`)
  const registry = createExpertRegistry({ store, clock: systemClock })
  const audit = createAuditLog(store, { clock: systemClock })
  const h = host(id, { psk: init.psk, allowlist: init.allowlist, bootstrap: init.bootstrap })
  const exchange = createExpertExchange({ spec, members: memberKeys(init.allowlist), maxConcurrentFetches: 2, syncOnConnect: init.syncOnConnect }, { host: h, identity: id, registry, clock: systemClock, logger: quiet, audit, ...extra })
  const events: Site['events'] = { stored: [], rejected: [], withdrawn: [] }
  exchange.on('stored', e => events.stored.push(e))
  exchange.on('rejected', e => events.rejected.push(e))
  exchange.on('withdrawn', e => events.withdrawn.push(e))
  await exchange.start()
  await h.start()
  return { id, host: h, store, registry, audit, exchange, events }
}

async function stopSite (s: Site): Promise<void> {
  await s.exchange.stop()
  await s.host.stop()
  await s.store.close()
}

async function auditKinds (s: Site): Promise<Array<[string, unknown]>> {
  const out: Array<[string, unknown]> = []
  for await (const r of s.audit.records()) out.push([r.kind, r.data.error ?? r.data.expert])
  return out
}

const idsOf = async (r: ExpertRegistry): Promise<string[]> => (await r.usable()).map(x => x.manifest.expertId)

describe('expert exchange over the mesh (A, B, C honest; M a misbehaving member)', () => {
  const dir = tempDir('fm-exchange-')
  const psk = generatePsk()
  let A: Site, B: Site, C: Site | undefined
  let M: SiteHost
  let ids: SiteIdentity[]
  let allowlist: string[]
  let published: VerifiedArtifact
  const bad: Record<'tampered' | 'stray' | 'wrongSpec', { hash: string, bytes: Uint8Array }> = {} as never

  beforeAll(async () => {
    await selectBackend('cpu', quiet)
    ids = await identities(dir.path, 5)
    const [a, b, , m] = ids as [SiteIdentity, SiteIdentity, SiteIdentity, SiteIdentity, SiteIdentity]
    allowlist = ids.slice(0, 4).map(i => i.peerId)
    A = await makeSite(dir.path, a, { psk, allowlist, bootstrap: [] })
    B = await makeSite(dir.path, b, { psk, allowlist, bootstrap: [A.host.multiaddrs()[0]!] })
    M = host(m, { psk, allowlist, bootstrap: [A.host.multiaddrs()[0]!, B.host.multiaddrs()[0]!] })
    await M.start()
    await waitFor('A, B and M to connect', () => A.host.connectedPeers().length === 2 && B.host.connectedPeers().length === 2)
  })
  afterAll(async () => {
    for (const s of [A, B, C]) if (s !== undefined) await stopSite(s)
    await M?.stop()
    dir.remove()
  })

  it('publishes at A; B fetches it, verifies it and holds the same bytes', async () => {
    published = await A.exchange.publish({ expertId: 'digits-01', slot: 0, version: 1, sampleCount: 11_000, metrics: { accuracy: 0.995 }, params })
    await waitFor('B to store digits-01', () => B.events.stored.length === 1)
    expect(B.events.stored[0]).toMatchObject({ hash: published.hash, from: A.id.peerId, record: { manifest: { siteId: A.id.peerId, expertId: 'digits-01', version: 1 } } })
    const held = await B.registry.load(published.hash)
    expect(Buffer.from(held.bytes)).toEqual(Buffer.from(published.bytes))
    expect(await idsOf(B.registry)).toEqual(['digits-01'])
    expect(await auditKinds(A)).toEqual([['artifact:published', 'digits-01']])
    expect(await auditKinds(B)).toEqual([['artifact:fetched', 'digits-01']])
  })

  it('rejects a tampered, a non-member and a wrong-spec artifact from M, each with its named error', async () => {
    const t = published.bytes.slice()
    t[t.length - 5]! ^= 0x01
    const stray = await buildArtifact({ identity: ids[4]!, spec, expertId: 'stray', slot: 1, version: 1, sampleCount: 5, params }, { clock: systemClock })
    const foreign = await buildArtifact({ identity: ids[3]!, spec: otherSpec, expertId: 'foreign', slot: 1, version: 1, sampleCount: 5, params: initParams(otherSpec) }, { clock: systemClock })
    const { sha256Hex } = await import('../node/store.ts')
    bad.tampered = { hash: sha256Hex(t), bytes: t }
    bad.stray = { hash: stray.hash, bytes: stray.bytes }
    bad.wrongSpec = { hash: foreign.hash, bytes: foreign.bytes }
    await serveBlobs(M, memoryBlobSource(new Map(Object.values(bad).map(x => [x.hash, x.bytes]))))
    for (const target of [A, B]) {
      for (const x of Object.values(bad)) {
        const ack = await M.request(target.id.peerId, EXPERTS_ANNOUNCE_PROTOCOL, { header: { kind: 'announce', hash: x.hash, size: x.bytes.byteLength } }, { schema: Ack })
        expect(ack.header).toEqual({ kind: 'ack', status: 'queued' })
      }
    }
    for (const target of [A, B]) {
      await waitFor('three rejections', () => target.events.rejected.length === 3)
      const byHash = new Map(target.events.rejected.map(e => [e.hash, e.error]))
      expect(byHash.get(bad.tampered.hash)).toMatchObject({ name: 'ArtifactHashMismatchError', message: expect.stringMatching(/\(expert 'digits-01'\): its tensors hash to/) })
      expect(byHash.get(bad.stray.hash)).toMatchObject({ name: 'NotAMemberError', message: `artifact ${stray.hash.slice(0, 12)} (expert 'stray') is signed by ${ids[4]!.peerId}, which is not a member` })
      expect(byHash.get(bad.wrongSpec.hash)).toMatchObject({ name: 'SpecMismatchError', message: expect.stringMatching(/\(expert 'foreign'\) was built for spec/) })
      expect(target.events.rejected.every(e => e.from === M.peerId)).toBe(true)
      expect(await target.registry.has(bad.tampered.hash)).toBe(false)
    }
    expect((await auditKinds(A)).filter(([k]) => k === 'artifact:rejected').map(([, e]) => e).sort())
      .toEqual(['ArtifactHashMismatchError', 'NotAMemberError', 'SpecMismatchError'])
    // Announced again, it is refused at once and not fetched again.
    const again = await M.request(A.id.peerId, EXPERTS_ANNOUNCE_PROTOCOL, { header: { kind: 'announce', hash: bad.stray.hash, size: bad.stray.bytes.byteLength } }, { schema: Ack })
    expect(again.header).toMatchObject({ kind: 'ack', status: 'rejected', reason: expect.stringMatching(/^NotAMemberError: /) })
    expect(A.exchange.stats().transfers).toBe(3)
  })

  it('refuses a revocation M forges for A\'s expert', async () => {
    const forged = await signRevocation({ identity: ids[3]!, expertId: 'digits-01', upToVersion: 1 }, { clock: systemClock })
    const signed = { ...forged, revocation: { ...forged.revocation, siteId: A.id.peerId } }
    const ack = await M.request(B.id.peerId, EXPERTS_ANNOUNCE_PROTOCOL, { header: { kind: 'revoke', signed } }, { schema: Ack })
    expect(ack.header).toEqual({ kind: 'ack', status: 'rejected', reason: `ArtifactSignatureError: revocation of expert 'digits-01': the signature does not verify with the key of ${A.id.peerId}` })
    expect(await idsOf(B.registry)).toEqual(['digits-01'])
  })

  it('a member that joins late catches up; assembly goes on without the rejected artifacts', async () => {
    await B.exchange.publish({ expertId: 'digits-23', slot: 1, version: 1, sampleCount: 12_000, params })
    await waitFor('A to store digits-23', () => A.events.stored.length === 1)
    C = await makeSite(dir.path, ids[2]!, { psk, allowlist, bootstrap: [A.host.multiaddrs()[0]!, B.host.multiaddrs()[0]!] })
    await waitFor('C to catch up', () => C!.events.stored.length === 2)
    expect(await idsOf(C.registry)).toEqual(['digits-01', 'digits-23'])
    expect(C.events.rejected).toEqual([])

    const experts = await Promise.all((await C.registry.usable()).map(async r => await C!.registry.load(r.hash)))
    const moe = assembleMoe({ spec, shared: params, experts })
    try {
      expect(Array.from(moe.mask)).toEqual([1, 1, 0])
      expect(moe.slots.map(s => s?.owner)).toEqual([A.id.peerId, B.id.peerId, undefined])
      const x = Float32Array.from({ length: 40 * spec.inputDim }, (_, i) => Math.sin(i * 1.7) * 2)
      const { gates, probabilities } = moe.predict(x)
      for (let i = 0; i < 40; i++) expect(gates[i * 3 + 2]).toBe(0)
      expect(probabilities.every(Number.isFinite)).toBe(true)
    } finally {
      moe.dispose()
    }
  })

  it('B withdraws digits-23 with a signed revocation; every member stops using it', async () => {
    const signed = await B.exchange.withdraw('digits-23', { reason: 'consent withdrawn' })
    expect(signed.revocation).toMatchObject({ siteId: B.id.peerId, expertId: 'digits-23', upToVersion: 1, reason: 'consent withdrawn' })
    for (const s of [A, C!]) await waitFor('the withdrawal to arrive', () => s.events.withdrawn.length === 1)
    for (const s of [A, B, C!]) {
      expect(await idsOf(s.registry)).toEqual(['digits-01'])
      expect(await s.registry.isWithdrawn({ siteId: B.id.peerId, expertId: 'digits-23', version: 1 })).toBe(true)
    }
    expect((await auditKinds(C!)).filter(([k]) => k === 'artifact:withdrawn')).toEqual([['artifact:withdrawn', 'digits-23']])
    const experts = await Promise.all((await A.registry.usable()).map(async r => await A.registry.load(r.hash)))
    const moe = assembleMoe({ spec, shared: params, experts })
    expect(Array.from(moe.mask)).toEqual([1, 0, 0])
    moe.dispose()
  })

  it('an inventory body that is not JSON is refused with ArtifactFormatError, not a bare SyntaxError', async () => {
    // M answers list with a cut-off JSON body of the announced size (found by test/fuzz-wire.test.ts).
    const body = new TextEncoder().encode('{"artifacts": [')
    await M.handleStream(EXPERTS_ANNOUNCE_PROTOCOL, async (fs, ctx) => {
      await fs.read(AnnounceRequest, { signal: ctx.signal })
      await fs.write({ kind: 'inventory', bytes: body.byteLength }, body, { signal: ctx.signal })
      await fs.closeWrite({ signal: ctx.signal })
    }, { maxFrameBytes: EXPERTS_ANNOUNCE_MAX_FRAME_BYTES })
    await expect(A.exchange.sync(M.peerId)).rejects.toMatchObject({
      name: 'ArtifactFormatError', message: `${M.peerId} sent a malformed inventory: inventory body is not UTF-8 JSON`
    })
  })
})

describe('downloads are bounded and deduplicated by hash', () => {
  const dir = tempDir('fm-exchange-bound-')
  const psk = generatePsk()
  const sites: Site[] = []
  afterAll(async () => {
    for (const s of sites) await stopSite(s)
    dir.remove()
  })

  it('runs at most two at once, queues the rest, fetches a hash announced twice once', async () => {
    const ids = await identities(dir.path, 3)
    const allowlist = ids.map(i => i.peerId)
    // No inventory sync on connect here: only announces may start downloads, so the counts are exact.
    const init = { psk, allowlist, syncOnConnect: false }
    const held: Array<() => void> = []
    let holding = true
    const heldFetch: ExpertExchangeComponents['fetchBlob'] = async (...args) => {
      if (holding) await new Promise<void>(resolve => { held.push(resolve) })
      return await fetchBlob(...args)
    }
    const P = await makeSite(dir.path, ids[0]!, { ...init, bootstrap: [] })
    // R is connected to Q only, so P's announces reach Q alone.
    const R = await makeSite(dir.path, ids[1]!, { ...init, bootstrap: [] })
    const Q = await makeSite(dir.path, ids[2]!, { ...init, bootstrap: [P.host.multiaddrs()[0]!, R.host.multiaddrs()[0]!] }, { fetchBlob: heldFetch })
    sites.push(P, R, Q)
    await waitFor('Q connected to P and R', () => Q.host.connectedPeers().length === 2 && P.host.connectedPeers().length === 1 && R.host.connectedPeers().length === 1)
    const artifacts: VerifiedArtifact[] = []
    for (let v = 1; v <= 5; v++) artifacts.push(await P.exchange.publish({ expertId: 'e', slot: 0, version: v, sampleCount: v, params }))
    await waitFor('two running, three queued', () => Q.exchange.stats().active === 2 && Q.exchange.stats().queued === 3)
    expect(held).toHaveLength(2)

    // R holds the first artifact too and announces it while Q's download of it is held open.
    expect(await R.registry.put(artifacts[0]!, { from: P.id.peerId })).toBe(true)
    await R.exchange.announce(artifacts[0]!.hash, { peers: [Q.id.peerId] })
    expect(Q.exchange.stats()).toMatchObject({ active: 2, queued: 3, transfers: 2 })

    holding = false
    for (const release of held.splice(0)) release()
    await waitFor('Q to store all five', () => Q.events.stored.length === 5)
    expect(Q.exchange.stats()).toEqual({ active: 0, queued: 0, peakActive: 2, transfers: 5, deduplicated: 1 })
    expect(new Set(Q.events.stored.map(e => e.hash))).toEqual(new Set(artifacts.map(a => a.hash)))
    expect(Q.events.stored.every(e => e.from === P.id.peerId)).toBe(true)
    expect((await Q.registry.usable()).map(r => r.manifest.version)).toEqual([5])
  })
})
