/**
 * A crash and restart in the networked MoE, with every site in a child
 * process of its own (the default for tcp): bravo's process is SIGKILLed once
 * round 1 is committed (no goodbye: host, store and expert exchange die with
 * it) and a new process starts from its store 10 s later, after the others ran rounds without it (a round that
 * waits for it gives up after the fixture's 3 s round timeout, and the next
 * attempt leaves it out once its heartbeats have stopped for 4 s). The run must complete, and bravo's
 * durable round log must equal the others' record for record (same hash chain):
 * it caught up on the rounds it missed.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSilentLogger } from '../coordinator/components.ts'
import { selectBackend } from '../node/model/backend.ts'
import { createRoundLog, recordHash } from '../node/round-log.ts'
import { openSiteStore } from '../node/store.ts'
import { loadSimData } from '../sim/data.ts'
import { runNetworkedMoe, type MoeMethodResult } from '../sim/moe-method.ts'
import { loadTopology } from '../sim/topology.ts'

describe('the networked MoE under a crash and restart', () => {
  let dir: string
  let result: MoeMethodResult
  const logs = new Map<string, string[]>()

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fm-sim-faults-'))
    const logger = createSilentLogger()
    await selectBackend('wasm', logger)
    const topology = await loadTopology(join(import.meta.dirname, 'fixtures', 'sim', 'small-crash.json'))
    const data = await loadSimData(topology)
    result = await runNetworkedMoe(topology, data, { dir, evalRounds: new Set([4]) }, { logger })
    for (const name of ['alpha', 'bravo', 'charlie']) {
      const store = await openSiteStore(join(dir, 'stores', name))
      try {
        logs.set(name, (await createRoundLog(store).records()).map(r => `${r.round}:${recordHash(r)}`))
      } finally {
        await store.close()
      }
    }
  }, 120_000)
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  it('completes every round and records the crash and the restart', () => {
    expect(result.rounds.map(r => r.round)).toEqual([0, 1, 2, 3, 4])
    expect(result.events.get('bravo')?.map(e => e.kind)).toEqual(['crash', 'restart'])
    expect(result.events.get('bravo')?.[0]?.round).toBe(1)
    expect(result.events.get('alpha')).toEqual([])
  })

  it('leaves the restarted site with the same round log as the others', () => {
    // It really missed rounds (so the equality below is a catch-up, not a round it took part in).
    expect(result.rounds.slice(1).filter(r => !r.participants.includes('bravo')).length).toBeGreaterThanOrEqual(1)
    const alpha = logs.get('alpha')!
    expect(alpha).toHaveLength(4)
    expect(logs.get('bravo')).toEqual(alpha)
    expect(logs.get('charlie')).toEqual(alpha)
  })

  it('ran every site in a child process of its own and SIGKILLed bravo\'s', () => {
    expect(result.execution).toBe('process')
    const pids = Object.fromEntries(['alpha', 'bravo', 'charlie'].map(n => [n, result.sites[n]!.pids]))
    // One life for alpha and charlie, two for bravo (the crash and the restart); all different, none this process.
    expect(pids.alpha).toHaveLength(1)
    expect(pids.charlie).toHaveLength(1)
    expect(pids.bravo).toHaveLength(2)
    const all = Object.values(pids).flat()
    expect(new Set(all).size).toBe(4)
    expect(all).not.toContain(process.pid)
    // The first bravo was killed, not stopped; every other life ended on its own after the run.
    const bravo = result.sites.bravo!.exits
    expect(bravo.find(e => e.pid === pids.bravo![0])).toEqual({ pid: pids.bravo![0], signal: 'SIGKILL', code: null })
    for (const e of [...bravo.filter(x => x.pid !== pids.bravo![0]), ...result.sites.alpha!.exits, ...result.sites.charlie!.exits]) expect(e).toMatchObject({ signal: null, code: 0 })
  })

  it('measures each site\'s peak RSS in its own process', () => {
    const rss = ['alpha', 'bravo', 'charlie'].map(n => result.sites[n]!.peakRssBytes)
    // A node with libp2p, LevelDB, tfjs and its share of MNIST: tens of MB at least, far below this machine's memory.
    for (const r of rss) {
      expect(r).toBeGreaterThan(50e6)
      expect(r).toBeLessThan(4e9)
    }
    expect(new Set(rss).size).toBeGreaterThan(1)
  })

  it('assembles the MoE from all three experts, the restarted site\'s included', () => {
    expect(result.assembled.experts).toBe(3)
    // A round that ran without bravo counts two participants; none may count fewer (quorum 0.6 of 3).
    expect(result.rounds.slice(1).every(r => r.participants.length >= 2)).toBe(true)
    expect(result.assembled.accuracy).toBeGreaterThan(0.6)
  })
})
