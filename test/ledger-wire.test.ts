/**
 * A site whose privacy budget is spent sends nothing more: proven on the
 * wire, with two real libp2p hosts on loopback and the host's wire tap,
 * which sees every frame byte the site writes before encryption.
 */
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSeededRandom, createSilentLogger } from '../coordinator/components.ts'
import { computeEpsilon } from '../coordinator/dp/rdp.ts'
import { PrivacySettingsSchema } from '../coordinator/dp/settings.ts'
import { generatePsk, type SiteHost } from '../node/mesh/host.ts'
import { createUpdateService, type ReceivedUpdate, type UpdateService } from '../node/mesh/update.ts'
import { createPrivacyLedger } from '../node/privacy/ledger.ts'
import { createPrivateUpdates, resolvePrivacyPlan } from '../node/privacy/updates.ts'
import { openSiteStore, type SiteStore } from '../node/store.ts'
import { UPDATE_PROTOCOL } from '../protocols/update/constants.ts'
import { host, identities, tempDir, waitFor } from './mesh-helpers.ts'

describe('a spent budget on the wire (two real libp2p hosts)', () => {
  const dir = tempDir('fm-ledger-wire-')
  let site: SiteHost
  let aggregator: SiteHost
  let updates: UpdateService
  let store: SiteStore
  const outUpdateBytes: number[] = []
  const received: ReceivedUpdate[] = []

  beforeAll(async () => {
    const [a, b] = await identities(dir.path, 2)
    const psk = generatePsk()
    const allowlist = [a!.peerId, b!.peerId]
    aggregator = host(b!, { psk, allowlist })
    await aggregator.start()
    const aggUpdates = createUpdateService({}, { host: aggregator, logger: createSilentLogger() })
    await aggUpdates.start()
    aggUpdates.onUpdate((u) => { received.push(u); return { accepted: true } })
    site = host(a!, { psk, allowlist, bootstrap: [aggregator.multiaddrs()[0]!] }, {
      wireTap: (direction, _peer, protocol, bytes) => { if (direction === 'out' && protocol === UPDATE_PROTOCOL) outUpdateBytes.push(bytes.byteLength) }
    })
    await site.start()
    updates = createUpdateService({}, { host: site, logger: createSilentLogger() })
    await updates.start()
    await waitFor('the site to connect to the aggregator', () => site.connectedPeers().includes(aggregator.peerId))
    store = await openSiteStore(join(dir.path, 'db'))
  })

  afterAll(async () => {
    await store.close()
    await site.stop()
    await aggregator.stop()
    dir.remove()
  })

  it('sends noised updates while the budget lasts, then refuses with PrivacyBudgetExceededError and writes no update byte', async () => {
    const settings = PrivacySettingsSchema.parse({ clipNorm: 1, dp: { mode: 'site', noiseMultiplier: 1.5 }, budget: { epsilon: 8, delta: 1e-5 } })
    const plan = resolvePrivacyPlan({ privacy: settings, sites: 2, vectorLength: 16, strategy: { kind: 'fedavg' }, compression: { kind: 'none' } })
    const ledger = createPrivacyLedger(store, { epsilonBudget: 8, delta: 1e-5 })
    const privacy = createPrivateUpdates({ settings, plan }, { ledger, random: createSeededRandom(9), logger: createSilentLogger() })
    const delta = new Map([['trunk.w', { shape: [16], data: Float32Array.from({ length: 16 }, (_, i) => i) }]])
    const send = async (round: number) => privacy.release(round, delta, async (tensors) => updates.send(aggregator.peerId, { round, site: 'site-a', dtype: 'f32', tensors }))

    // How many rounds fit: the largest N with eps(N steps) <= 8.
    let fits = 0
    while (computeEpsilon({ noiseMultiplier: 1.5, sampleRate: 1, steps: fits + 1, delta: 1e-5 }).epsilon <= 8) fits++
    expect(fits).toBeGreaterThan(1)

    for (let round = 0; round < fits; round++) {
      const { sent, entry } = await send(round)
      expect(sent.accepted).toBe(true)
      expect(entry!.round).toBe(round)
    }
    await waitFor('the aggregator to receive every update', () => received.length === fits)
    // What crossed the wire was clipped (norm 1 before noise) and noised, not the raw delta.
    expect(received[0]!.tensors.get('trunk.w')!.data[15]).not.toBe(15)
    const bytesWhileSpending = outUpdateBytes.reduce((a, b) => a + b, 0)
    expect(bytesWhileSpending).toBeGreaterThan(0)

    await expect(send(fits)).rejects.toMatchObject({ name: 'PrivacyBudgetExceededError', message: expect.stringContaining(`update for round ${fits} refused`) })
    await expect(send(fits + 1)).rejects.toMatchObject({ name: 'PrivacyBudgetExceededError' })
    // Nothing more on the wire, nothing more received, nothing more charged.
    expect(outUpdateBytes.reduce((a, b) => a + b, 0)).toBe(bytesWhileSpending)
    expect(received.length).toBe(fits)
    const status = await ledger.status()
    expect(status.releases).toBe(fits)
    expect(status.spent.epsilon).toBeCloseTo(computeEpsilon({ noiseMultiplier: 1.5, sampleRate: 1, steps: fits, delta: 1e-5 }).epsilon, 9)
    expect(status.spent.epsilon).toBeLessThanOrEqual(8)
  })
})
