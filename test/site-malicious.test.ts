/**
 * Members that turn hostile, on the real mesh: one sends an update holding
 * NaN, one a frame whose body was altered after it was hashed, one runs
 * another model spec. The coordinator rejects each with a named error, cuts
 * the first two off (and keeps them out), refuses the third at hello, audits
 * all three, and the honest sites finish their rounds with the same log, bit
 * for bit, as a federation nobody attacked.
 */
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { createSilentLogger } from '../coordinator/components.ts'
import { createAuditLog, verifyAuditLog, type AuditRecord } from '../node/audit.ts'
import { systemClock } from '../node/components.ts'
import type { SiteIdentity } from '../node/identity.ts'
import { createSiteHost, generatePsk, type SiteHost } from '../node/mesh/host.ts'
import { createMembership } from '../node/mesh/membership.ts'
import { createUpdateService, type UpdateService } from '../node/mesh/update.ts'
import type { CommittedRound } from '../node/round-log.ts'
import type { SiteEvents } from '../node/site/site.ts'
import { openSiteStore } from '../node/store.ts'
import { MEMBERSHIP_PROTOCOL } from '../protocols/membership/constants.ts'
import { MODEL_PROTOCOL } from '../protocols/model/constants.ts'
import { encodeTensors, tensorBodyHash } from '../protocols/tensor-codec/tensor-codec.ts'
import { UPDATE_PROTOCOL } from '../protocols/update/constants.ts'
import { UpdateAck } from '../protocols/update/update.ts'
import { tempDir, waitFor } from './mesh-helpers.ts'
import { DATA, finalWeights, hex, LOOPBACK, records, settings, siteIdentities, siteName, SPEC_HASH, startFederation } from './support/site-federation.ts'

const dir = tempDir('fm-site-malicious-')
afterAll(() => { dir.remove() })
const ROUNDS = 4
const honestNames = Array.from({ length: DATA.sites }, (_, i) => siteName(i))

interface Rogue { id: SiteIdentity, host: SiteHost, updates: UpdateService, refusedBy: Set<string> }

async function rogue (id: SiteIdentity, name: string, spec: string, psk: Uint8Array, allowlist: string[], bootstrap: string[]): Promise<Rogue> {
  const host = createSiteHost({ identity: id, listen: [LOOPBACK], bootstrap, psk, allowlist, reconnect: { initialMs: 50, maxMs: 500 } }, { logger: createSilentLogger(), clock: systemClock })
  const membership = createMembership({ hello: { site: name, roles: ['member'], capabilities: ['train'], modelSpecHash: spec, protocols: [MEMBERSHIP_PROTOCOL, UPDATE_PROTOCOL, MODEL_PROTOCOL] } }, { host, logger: createSilentLogger() })
  const updates = createUpdateService({}, { host, logger: createSilentLogger() })
  const refusedBy = new Set<string>()
  membership.on('member:refused', ({ peerId }) => { refusedBy.add(peerId) })
  await membership.start()
  await updates.start()
  await host.start()
  return { id, host, updates, refusedBy }
}

const zerosHash = createHash('sha256').update(new Uint8Array(4 * DATA.dim)).digest('hex')
const weights = (fill: number): Map<string, { shape: number[], data: Float32Array }> => new Map([['w', { shape: [DATA.dim], data: new Float32Array(DATA.dim).fill(fill) }]])

describe('hostile members on the real mesh', () => {
  it('a NaN update and a tampered frame cut their senders off, another spec is refused; the honest sites finish with the unattacked log', async () => {
    // The unattacked reference, same settings.
    const refPath = join(dir.path, 'reference')
    const ref = await startFederation({ dir: refPath, psk: generatePsk(), identities: await siteIdentities(refPath, DATA.sites) })
    let reference: { log: CommittedRound[], w: string }
    try {
      await Promise.all(ref.sites.map(async s => await s.run({ untilRound: ROUNDS })))
      reference = { log: await records(ref.sites[0]!), w: hex(await finalWeights(ref.sites[0]!)) }
    } finally {
      await ref.stop()
    }

    const path = join(dir.path, 'attacked')
    const psk = generatePsk()
    const honest = await siteIdentities(path, DATA.sites)
    const [nanId, tamperId, otherSpecId] = await siteIdentities(join(path, 'rogues'), 3)
    const rogueIds = [nanId!.peerId, tamperId!.peerId, otherSpecId!.peerId]
    const allowlist = [...honest.map(i => i.peerId), ...rogueIds]
    // Honest sites outrank the rest: the test is about hostile members, not a hostile coordinator.
    const priorities = Object.fromEntries(honest.map((id, i) => [id.peerId, 10 - i]))
    const fed = await startFederation({ dir: path, psk, identities: honest, extraMembers: rogueIds, settings: settings({ priorities }) })
    const coordinator = fed.sites[0]!
    const cutOff: Array<SiteEvents['peer:cut-off']> = []
    const aborted: Array<SiteEvents['round:aborted']> = []
    coordinator.on('peer:cut-off', (e) => { cutOff.push(e) })
    coordinator.on('round:aborted', (e) => { aborted.push(e) })
    const rogues: Rogue[] = []
    try {
      const bootstrap = fed.sites.map(s => s.multiaddrs()[0]!)
      rogues.push(await rogue(nanId!, 'mallory-nan', SPEC_HASH, psk, allowlist, bootstrap))
      rogues.push(await rogue(tamperId!, 'mallory-tamper', SPEC_HASH, psk, allowlist, bootstrap))
      rogues.push(await rogue(otherSpecId!, 'mallory-spec', 'ab'.repeat(32), psk, allowlist, bootstrap))
      const peerView = (id: string) => coordinator.status().peers.find(p => p.peerId === id)!
      await waitFor('the coordinator to take both rogues as live members', () => peerView(nanId!.peerId).live && peerView(tamperId!.peerId).live)
      await waitFor('the other spec to be refused by the coordinator', () => rogues[2]!.refusedBy.has(coordinator.peerId))
      expect(peerView(otherSpecId!.peerId)).toMatchObject({ live: false })

      const runs = Promise.all(fed.sites.map(async s => await s.run({ untilRound: ROUNDS })))
      runs.catch(() => {}) // awaited below; a failed assertion before that stops the sites

      // 1. NaN in an otherwise well-formed update for round 1.
      const nan = weights(0.5)
      nan.get('w')!.data[3] = Number.NaN
      await expect(rogues[0]!.updates.send(coordinator.peerId, { round: 1, site: 'mallory-nan', baseHash: zerosHash, dtype: 'f32', numSamples: 40, meta: { encoding: 'tensors', nonce: '1:mallory-nan' }, tensors: nan }))
        .rejects.toMatchObject({ name: 'RemoteError', remoteCode: 'ERR_NON_FINITE_UPDATE', message: expect.stringContaining('update holds a non-finite value (NaN) at index 3 of 6') })

      // 2. A body altered after it was hashed: one value's bits flipped in transit.
      const body = encodeTensors(weights(0.25), { dtype: 'f32' })
      const header = { kind: 'update', round: 1, site: 'mallory-tamper', baseHash: zerosHash, dtype: 'f32', bodyHash: tensorBodyHash(body), numSamples: 40, meta: { encoding: 'tensors', nonce: '1:mallory-tamper' } }
      body[body.byteLength - 2]! ^= 0x40
      await expect(rogues[1]!.host.request(coordinator.peerId, UPDATE_PROTOCOL, { header, body }, { schema: UpdateAck }))
        .rejects.toMatchObject({ name: 'RemoteError', remoteCode: 'ERR_TENSOR_CHECKSUM' })

      await runs
      await waitFor('both rogues to be disconnected', () => !coordinator.host.connectedPeers().includes(nanId!.peerId) && !coordinator.host.connectedPeers().includes(tamperId!.peerId))

      expect(cutOff.map(e => [e.site, e.error.name])).toEqual([['mallory-nan', 'NonFiniteUpdateError'], ['mallory-tamper', 'TensorChecksumError']])
      expect(peerView(nanId!.peerId)).toMatchObject({ live: false, cutOff: true })
      expect(peerView(tamperId!.peerId)).toMatchObject({ live: false, cutOff: true })
      // A cut-off participant reopened the round without it; nothing of its attempt was committed.
      for (const e of aborted) expect(e.reason).toMatch(/^participant mallory-(nan|tamper) was cut off$/)

      // Same log and weights as the unattacked run, at every honest site.
      for (const s of fed.sites) {
        const log = await records(s)
        expect(log).toEqual(reference.log)
        expect(hex(await finalWeights(s))).toBe(reference.w)
        for (const r of log) expect(r.participants).toEqual(honestNames)
      }
    } finally {
      for (const r of rogues) await r.host.stop()
      await fed.stop()
    }

    // The coordinator's audit log names all three refusals and verifies.
    const store = await openSiteStore(join(path, siteName(0)))
    try {
      const refused: AuditRecord[] = []
      for await (const r of createAuditLog(store, { clock: systemClock }).records()) if (r.kind === 'peer:refused') refused.push(r)
      const byPeer = (id: string) => refused.filter(r => r.data['peer'] === id).map(r => r.data['code'])
      expect(byPeer(nanId!.peerId)).toEqual(['NonFiniteUpdateError'])
      expect(byPeer(tamperId!.peerId)).toEqual(['TensorChecksumError'])
      expect(byPeer(otherSpecId!.peerId)).toContain('model-spec-mismatch')
      expect((await verifyAuditLog(store)).ok).toBe(true)
    } finally {
      await store.close()
    }
  })
})
