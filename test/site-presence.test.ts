/**
 * Presence with a long heartbeat timeout (what a crowded fleet uses): a
 * member whose connection closes leaves the live view at once, and the
 * coordinator it held passes to the next site, long before the timeout could
 * say so; a member that comes back is live again after its hello.
 */
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { createSeededRandom, createSilentLogger } from '../coordinator/components.ts'
import { systemClock } from '../node/components.ts'
import { generatePsk } from '../node/mesh/host.ts'
import { createSite, type Site } from '../node/site/site.ts'
import { LOOPBACK, SPEC_HASH, regressionLearner, settings, siteIdentities, siteName, startFederation } from './support/site-federation.ts'
import { tempDir, waitFor } from './mesh-helpers.ts'

const dir = tempDir('fm-site-presence-')
afterAll(() => { dir.remove() })

// Silence alone would keep a stopped member live for a minute; the waits below give up after 15 s.
const TIMEOUT_MS = 60_000
const livePeers = (s: Site): string[] => s.status().peers.filter(p => p.live).map(p => p.peerId).sort()

describe('presence', () => {
  it('drops a member whose connection closed at once, re-elects, and takes it back when it returns', async () => {
    const path = join(dir.path, 'run')
    const identities = await siteIdentities(path, 3)
    const psk = generatePsk()
    const presenceSettings = settings({ heartbeatIntervalMs: 200, heartbeatTimeoutMs: TIMEOUT_MS })
    const fed = await startFederation({ dir: path, psk, identities, settings: presenceSettings })
    try {
      const [a, b, c] = fed.sites as [Site, Site, Site]
      await waitFor('every site to see the other two live', () => fed.sites.every(s => livePeers(s).length === 2))
      const leader = a.status().coordinator!.peerId
      const gone = fed.sites.find(s => s.status().peerId === leader)!
      const stay = fed.sites.filter(s => s !== gone)
      expect(stay.map(s => s.status().coordinator?.peerId)).toEqual([leader, leader])

      const stoppedAt = Date.now()
      await gone.stop()
      await waitFor('the others to drop the stopped coordinator', () => stay.every(s => !livePeers(s).includes(leader)))
      await waitFor('the others to elect the next site', () => stay.every(s => s.status().coordinator !== null && s.status().coordinator!.peerId !== leader))
      expect(Date.now() - stoppedAt).toBeLessThan(TIMEOUT_MS)
      const next = stay[0]!.status().coordinator!.peerId
      expect(stay[1]!.status().coordinator!.peerId).toBe(next)
      expect([a, b, c].map(s => s.status().peerId)).toContain(next)

      const back = createSite({
        site: siteName(fed.sites.indexOf(gone)),
        identity: identities[fed.sites.indexOf(gone)]!,
        store: join(path, siteName(fed.sites.indexOf(gone))),
        host: { listen: [LOOPBACK], bootstrap: stay.map(s => s.multiaddrs()[0]!), psk, allowlist: identities.map(i => i.peerId), reconnect: { initialMs: 50, maxMs: 500 } },
        federation: presenceSettings,
        specHash: SPEC_HASH
      }, { clock: systemClock, random: createSeededRandom('site/back'), logger: createSilentLogger('forgemesh:back'), learner: regressionLearner(fed.sites.indexOf(gone)) })
      await back.start()
      try {
          await waitFor('the returning site to be live again at the others', () => stay.every(s => livePeers(s).includes(leader)))
        await waitFor('the returning site to be elected again', () => stay.every(s => s.status().coordinator?.peerId === leader))
      } finally {
        await back.stop()
      }
    } finally {
      await fed.stop()
    }
  }, 60_000)
})
