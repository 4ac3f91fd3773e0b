/**
 * The per-federation options of the update path, over the real mesh:
 * compression (top-k with error feedback, int8 values) with its byte
 * accounting, and site-level DP charged to each site's privacy ledger, which
 * refuses the update that would pass the budget before anything is sent.
 */
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { createCompressor } from '../coordinator/compression/combined.ts'
import { computeEpsilon } from '../coordinator/dp/rdp.ts'
import { createAuditLog } from '../node/audit.ts'
import { systemClock } from '../node/components.ts'
import { generatePsk } from '../node/mesh/host.ts'
import type { SiteEvents } from '../node/site/site.ts'
import { openSiteStore } from '../node/store.ts'
import { leastSquares, makeRegressionData } from './support/rounds-federation.ts'
import { DATA, finalWeights, records, settings, siteIdentities, siteName, startFederation } from './support/site-federation.ts'
import { tempDir, waitFor } from './mesh-helpers.ts'

const dir = tempDir('fm-site-options-')
afterAll(() => { dir.remove() })
const names = Array.from({ length: DATA.sites }, (_, i) => siteName(i))

describe('compression over the mesh', () => {
  it('top-k (half the values, int8, error feedback) converges, every site holds the same log, and each round reports its bytes and ratio', async () => {
    const path = join(dir.path, 'topk')
    const compression = { kind: 'topk-int8' as const, fraction: 0.5, blockSize: 8 }
    const fed = await startFederation({ dir: path, psk: generatePsk(), identities: await siteIdentities(path, DATA.sites), settings: settings({ compression }) })
    const sent: Array<SiteEvents['update:sent']> = []
    for (const s of fed.sites) s.on('update:sent', (e) => { sent.push(e) })
    try {
      await Promise.all(fed.sites.map(async s => await s.run({ untilRound: 40 })))
      const logs = await Promise.all(fed.sites.map(records))
      for (const log of logs) expect(log).toEqual(logs[0])
      for (const r of logs[0]!) expect(r.participants).toEqual(names)
      // What one update of 6 values takes in this layout: 3 kept values as int8, one scale, 3 index gaps.
      const wire = createCompressor(compression, { length: DATA.dim }).compress(Float32Array.of(1, -2, 3, -4, 5, -6)).wireBytes
      for (const c of fed.commits[0]!) {
        expect(c.bytes.round?.perSite.map(s => [s.site, s.rawBytes, s.wireBytes])).toEqual(names.map(s => [s, 24, wire]))
        expect(c.bytes.round?.ratio).toBeCloseTo(24 / wire, 12)
      }
      // Sender and coordinator count the same bytes.
      expect(new Set(sent.map(e => e.wireBytes))).toEqual(new Set([wire]))
      // Error feedback delivers what top-k held back: the federation still approaches the optimum.
      const opt = leastSquares(makeRegressionData(DATA.seed, DATA.sites, DATA.dim).data, DATA.dim)
      const w = await finalWeights(fed.sites[0]!)
      expect(Math.max(...[...w].map((v, j) => Math.abs(v - opt[j]!)))).toBeLessThan(1e-2)
    } finally {
      await fed.stop()
    }
  })
})

describe('differential privacy and the ledger over the mesh', () => {
  it('charges each round to every site\'s ledger, and the round past the budget is refused before its update is sent', async () => {
    const path = join(dir.path, 'dp')
    const z = 1.5
    const delta = 1e-5
    const epsAfter = (steps: number): number => computeEpsilon({ noiseMultiplier: z, sampleRate: 1, steps, delta }).epsilon
    // A budget that holds exactly three rounds.
    const budget = (epsAfter(3) + epsAfter(4)) / 2
    const privacy = { clipNorm: 1, dp: { mode: 'site' as const, noiseMultiplier: z }, budget: { epsilon: budget, delta } }
    const fed = await startFederation({ dir: path, psk: generatePsk(), identities: await siteIdentities(path, DATA.sites), settings: settings({ privacy, roundTimeoutMs: 2_000 }) })
    const refused: Array<SiteEvents['privacy:refused']> = []
    const sent: Array<SiteEvents['update:sent']> = []
    for (const s of fed.sites) {
      s.on('privacy:refused', (e) => { refused.push(e) })
      s.on('update:sent', (e) => { sent.push(e) })
    }
    try {
      await Promise.all(fed.sites.map(async s => await s.run({ untilRound: 3 })))
      for (const s of fed.sites) {
        const p = s.status().privacy!
        expect(p.spent.epsilon).toBeCloseTo(epsAfter(3), 9)
        expect(p.remaining.epsilon).toBeCloseTo(budget - epsAfter(3), 9)
      }
      const sentBefore = sent.length
      const stop = new AbortController()
      const fourth = Promise.allSettled(fed.sites.map(async s => await s.run({ untilRound: 4, signal: stop.signal })))
      await waitFor('every site to refuse round 4', () => refused.length === DATA.sites)
      stop.abort()
      for (const r of await fourth) expect(r.status).toBe('rejected')
      expect(refused.map(e => e.round)).toEqual([4, 4, 4])
      expect(refused[0]!.message).toMatch(/^update for round 4 refused: eps would reach .* of the budget .*; nothing was sent$/)
      expect(sent.length).toBe(sentBefore)
      for (const s of fed.sites) expect(s.status().round).toBe(3)
    } finally {
      await fed.stop()
    }
    const store = await openSiteStore(join(path, siteName(1)))
    try {
      const kinds: string[] = []
      for await (const r of createAuditLog(store, { clock: systemClock }).records()) if (r.kind.startsWith('privacy:')) kinds.push(`${r.kind}@${String(r.data['round'])}`)
      expect(kinds).toEqual(['privacy:spent@1', 'privacy:spent@2', 'privacy:spent@3', 'privacy:refused@4'])
    } finally {
      await store.close()
    }
  })
})
