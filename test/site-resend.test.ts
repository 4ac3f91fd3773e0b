/**
 * Members hold a commit before their coordinator has written it (it
 * announces first), so they send the next round's update while it is still
 * announcing and writing. The coordinator holds such an update early instead
 * of refusing it, so no update body crosses the wire twice; the round log is
 * the same as ever (every site in every round, each nonce once).
 */
import { afterAll, describe, expect, it } from 'vitest'
import { generatePsk } from '../node/mesh/host.ts'
import { createFrameCensus } from '../sim/scale.ts'
import { DATA, records, settings, siteIdentities, siteName, startFederation } from './support/site-federation.ts'
import { tempDir } from './mesh-helpers.ts'

const dir = tempDir('fm-site-resend-')
afterAll(() => { dir.remove() })

const ROUNDS = 12

describe('update resends', () => {
  it('sends each member\'s update once per round, with every site in every round', async () => {
    const census = createFrameCensus()
    const names = Array.from({ length: DATA.sites }, (_, i) => siteName(i))
    const fed = await startFederation({
      dir: dir.path,
      psk: generatePsk(),
      identities: await siteIdentities(dir.path, DATA.sites),
      // A generous heartbeat timeout: a loaded machine must not cause a re-election (a new term resends by design).
      settings: settings({ heartbeatTimeoutMs: 10_000 }),
      wireTap: (i) => (direction, peerId, protocol, bytes) => { census.tap(siteName(i), direction, peerId, protocol, bytes) }
    })
    try {
      // Round 1 may meet a coordinator not yet elected everywhere; from round 2 on the mesh is settled.
      await Promise.all(fed.sites.map(async s => await s.run({ untilRound: 1 })))
      const afterOne = census.counts()
      await Promise.all(fed.sites.map(async s => await s.run({ untilRound: ROUNDS })))
      const counts = census.counts()
      const resent = (counts['update:update(resend)']?.frames ?? 0) - (afterOne['update:update(resend)']?.frames ?? 0)
      const sent = (counts['update:update']?.frames ?? 0) - (afterOne['update:update']?.frames ?? 0)
      expect(resent).toBe(0)
      // Two members send to the coordinator in each of rounds 2..ROUNDS; its own update never crosses the wire.
      expect(sent).toBe((DATA.sites - 1) * (ROUNDS - 1))
      const logs = await Promise.all(fed.sites.map(records))
      for (const log of logs) expect(log).toEqual(logs[0])
      for (const r of logs[0]!) {
        expect(r.participants).toEqual(names)
        expect(r.updates.map(u => u.nonce)).toEqual(names.map(s => `${r.round}:${s}`))
      }
    } finally {
      await fed.stop()
    }
  })
})
