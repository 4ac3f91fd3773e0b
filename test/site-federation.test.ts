/**
 * Three sites, each with its own libp2p host and LevelDB store, run the
 * linear-regression federation over the real mesh on loopback: membership,
 * heartbeats and election, updates to the elected coordinator, the pure round
 * machine there, one-batch commits announced to every member.
 */
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { createAuditLog, verifyAuditLog } from '../node/audit.ts'
import { systemClock } from '../node/components.ts'
import { generatePsk } from '../node/mesh/host.ts'
import { openSiteStore } from '../node/store.ts'
import type { CommittedRound } from '../node/round-log.ts'
import type { Learner } from '../node/site/learner.ts'
import { leastSquares, makeRegressionData } from './support/rounds-federation.ts'
import { DATA, finalWeights, hex, records, regressionLearner, settings, siteIdentities, siteName, startFederation } from './support/site-federation.ts'
import { tempDir } from './mesh-helpers.ts'

const dir = tempDir('fm-site-federation-')
afterAll(() => { dir.remove() })

// FedAvg with one full-batch local step per round is gradient descent on the
// pooled loss, so it reaches the pooled least-squares optimum; the tolerance
// is test/rounds-federation.test.ts's (about a hundred float32 ulps here).
const TOLERANCE = 1e-5
const ROUNDS = 25
const names = Array.from({ length: DATA.sites }, (_, i) => siteName(i))

async function federation (run: string): Promise<{ logs: CommittedRound[][], weights: string[], w: Float32Array, commits: Awaited<ReturnType<typeof startFederation>>['commits'] }> {
  const path = join(dir.path, run)
  const fed = await startFederation({ dir: path, psk: generatePsk(), identities: await siteIdentities(path, DATA.sites) })
  try {
    await Promise.all(fed.sites.map(async s => await s.run({ untilRound: ROUNDS })))
    const logs = await Promise.all(fed.sites.map(records))
    const finals = await Promise.all(fed.sites.map(finalWeights))
    return { logs, weights: finals.map(hex), w: finals[0]!, commits: fed.commits }
  } finally {
    await fed.stop()
  }
}

describe('the regression federation over the mesh (3 sites, real libp2p, real LevelDB)', () => {
  it('is bit-identical across two runs, reaches the closed-form optimum, and every site holds the same log', async () => {
    const a = await federation('a')
    const b = await federation('b')
    for (const weights of [...a.weights, ...b.weights]) expect(weights).toBe(a.weights[0])
    for (const log of [...a.logs, ...b.logs]) expect(log).toEqual(a.logs[0])

    const log = a.logs[0]!
    expect(log.map(r => r.round)).toEqual(Array.from({ length: ROUNDS }, (_, i) => i + 1))
    for (const r of log) {
      expect(r.participants).toEqual(names)
      expect(r.updates.map(u => `${u.site}/${u.nonce}`)).toEqual(names.map(s => `${s}/${r.round}:${s}`))
      expect(r.dropouts).toEqual([])
    }

    const opt = leastSquares(makeRegressionData(DATA.seed, DATA.sites, DATA.dim).data, DATA.dim)
    const err = Math.max(...[...a.w].map((v, j) => Math.abs(v - opt[j]!)))
    expect(err).toBeLessThan(TOLERANCE)

    // Every site saw every commit once, with the coordinator's byte accounting:
    // 6 float32 values per update, uncompressed (ratio 1), from each of the 3 sites.
    for (const seen of a.commits) {
      expect(seen.map(c => c.round)).toEqual(log.map(r => r.round))
      for (const c of seen) {
        expect(c.bytes.round?.perSite.map(s => [s.site, s.rawBytes, s.wireBytes, s.ratio])).toEqual(names.map(s => [s, 24, 24, 1]))
        expect(c.bytes.round?.ratio).toBe(1)
      }
      // Each site wrote frames to the mesh in the rounds it took part in.
      expect(seen.slice(1).every(c => c.bytes.sentByThisSite > 0)).toBe(true)
    }
  })

  it('a round that misses its quorum aborts with QuorumNotReachedError, commits nothing, reopens, and completes', async () => {
    const path = join(dir.path, 'quorum')
    // site-3 blocks in its second round's training until the test lets it go.
    let release: (() => void) | undefined
    let calls = 0
    const held = (i: number): Learner => {
      const inner = regressionLearner(i)
      if (i !== 2) return inner
      return {
        ...inner,
        sampleCount: inner.sampleCount,
        trainLocal: async (steps, options) => {
          if (++calls === 2) await new Promise<void>(resolve => { release = resolve })
          return await inner.trainLocal(steps, options)
        }
      }
    }
    const identities = await siteIdentities(path, DATA.sites)
    // All three updates are needed, site-3 must not coordinate (it is held), and a round waits 1.5 s.
    const priorities = { [identities[0]!.peerId]: 2, [identities[1]!.peerId]: 1 }
    const fed = await startFederation({ dir: path, psk: generatePsk(), identities, learners: held, settings: settings({ quorumFraction: 1, roundTimeoutMs: 1_500, priorities }) })
    try {
      const aborted = new Promise<{ round: number, attempt: number, error?: { name: string, message: string } }>(resolve => { fed.sites[0]!.on('round:aborted', resolve) })
      const runs = Promise.all(fed.sites.map(async s => await s.run({ untilRound: 3 })))
      runs.catch(() => {}) // awaited below; a failed assertion before that stops the sites
      const e = await aborted
      expect(e.round).toBe(2)
      expect(e.attempt).toBe(1)
      expect(e.error?.name).toBe('QuorumNotReachedError')
      expect(e.error?.message).toBe('round 2 attempt 1 closed at its deadline with 2 of 3 required updates; nothing committed, round reopened')
      // Nothing of the failed attempt was committed anywhere.
      for (const s of fed.sites) expect((await s.roundLog().last())?.round).toBe(1)
      release!()
      await runs
      const logs = await Promise.all(fed.sites.map(records))
      for (const log of logs) expect(log).toEqual(logs[0])
      expect(logs[0]!.map(r => r.participants)).toEqual([names, names, names])
    } finally {
      await fed.stop()
    }
    // The coordinator's audit log holds the abort, then the commits.
    const store = await openSiteStore(join(path, siteName(0)))
    try {
      const audited: Array<[string, unknown]> = []
      for await (const r of createAuditLog(store, { clock: systemClock }).records()) {
        if (r.kind.startsWith('round:')) audited.push([r.kind, r.data['round']])
      }
      expect(audited).toEqual([['round:committed', 1], ['round:aborted', 2], ['round:committed', 2], ['round:committed', 3]])
      expect((await verifyAuditLog(store)).ok).toBe(true)
    } finally {
      await store.close()
    }
  })
})
