import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import type { CommittedRound } from '../node/round-log.ts'
import { createFederation, leastSquares, makeRegressionData, type Federation, type Stage } from './support/rounds-federation.ts'

const root = mkdtempSync(join(tmpdir(), 'fm-federation-'))
afterAll(() => { rmSync(root, { recursive: true, force: true }) })
let runs = 0

// Four sites, six weights (five features and a bias), non-IID feature shifts.
// FedAvg with one full-batch local step per round and sample weights is
// exactly gradient descent on the pooled loss, so it must reach the pooled
// least-squares optimum; 1e-5 is about a hundred float32 ulps at these magnitudes.
const BASE = { sites: 4, dim: 6, seed: 7, strategy: { kind: 'fedavg' as const }, localSteps: 1, localLr: 0.2 }
const TOLERANCE = 1e-5

async function run (rounds: number, onStage?: (round: number, stage: Stage, fed: Federation) => Promise<void>): Promise<{ fed: Federation, records: Map<string, CommittedRound[]>, globals: Map<string, Float32Array> }> {
  const fed = createFederation({ ...BASE, dir: join(root, `run-${runs++}`) })
  await fed.start()
  for (let r = 1; r <= rounds; r++) await fed.runRound(onStage === undefined ? undefined : async (stage, f) => { await onStage(r, stage, f) })
  for (const id of fed.ids) if (!fed.isUp(id)) await fed.restart(id)
  const records = new Map<string, CommittedRound[]>()
  const globals = new Map<string, Float32Array>()
  for (const id of fed.ids) {
    records.set(id, await fed.records(id))
    globals.set(id, await fed.global(id))
  }
  await fed.close()
  return { fed, records, globals }
}

const bytesOf = (v: Float32Array): string => Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')

function expectNoUpdateCountedTwice (records: CommittedRound[]): void {
  for (const r of records) {
    const sites = r.updates.map(u => u.site)
    expect(new Set(sites).size).toBe(sites.length)
    expect(sites).toEqual(r.participants)
  }
}

describe('reference federation: linear regression with a closed-form optimum', () => {
  it('is bit-identical across two seeded runs and reaches the pooled least-squares optimum', async () => {
    const a = await run(120)
    const b = await run(120)
    const w = a.globals.get('site-1')!
    for (const id of a.fed.ids) {
      expect(bytesOf(a.globals.get(id)!)).toBe(bytesOf(w))
      expect(bytesOf(b.globals.get(id)!)).toBe(bytesOf(w))
      expect(b.records.get(id)).toEqual(a.records.get(id))
    }
    const opt = leastSquares(makeRegressionData(BASE.seed, BASE.sites, BASE.dim).data, BASE.dim)
    const err = Math.max(...[...w].map((v, j) => Math.abs(v - opt[j]!)))
    expect(err).toBeLessThan(TOLERANCE)
    expect(a.records.get('site-1')!.map(r => r.round)).toEqual(Array.from({ length: 120 }, (_, i) => i + 1))
    expectNoUpdateCountedTwice(a.records.get('site-1')!)
  })
})

describe('crash and restart of a site at each stage of a round (store reopened from disk)', () => {
  const ROUNDS = 5
  let reference: Awaited<ReturnType<typeof run>> | undefined
  const referenceRun = async (): Promise<Awaited<ReturnType<typeof run>>> => (reference ??= await run(ROUNDS))

  // [stage at which site-3 dies in round 3, stage at which it comes back]
  const cases: Array<[Stage, Stage]> = [
    ['opened', 'collected'], // dies before sending its update, sends it after the restart
    ['collected', 'collected'], // dies after its update was counted, resends it after the restart
    ['aggregated', 'committed'], // misses the announcement, catches up from a peer
    ['announced', 'announced'], // dies right after its own durable commit
    ['committed', 'committed']
  ]
  it.each(cases)('site-3 killed at %s and restarted at %s: every log equals the fault-free run', async (crashAt, restartAt) => {
    const ref = await referenceRun()
    const out = await run(ROUNDS, async (round, stage, fed) => {
      if (round !== 3) return
      if (stage === crashAt) await fed.crash('site-3')
      if (stage === restartAt && !fed.isUp('site-3')) await fed.restart('site-3')
    })
    for (const id of out.fed.ids) {
      expect(out.records.get(id)).toEqual(ref.records.get('site-1'))
      expect(bytesOf(out.globals.get(id)!)).toBe(bytesOf(ref.globals.get('site-1')!))
      expectNoUpdateCountedTwice(out.records.get(id)!)
    }
    // The resent update after a restart was acknowledged as a duplicate, not counted again.
    if (crashAt === 'collected') expect(out.fed.results.get('site-3')).toContain('duplicate')
    expect(out.fed.results.get('site-3')!.filter(s => s === 'accepted')).toHaveLength(ROUNDS)
  })
})

describe('coordinator crash', () => {
  it.each(['opened', 'collected', 'aggregated'] as const)('killed at %s: a new coordinator is elected and reopens the round; nothing is lost or counted twice', async (stage) => {
    const out = await run(5, async (round, s, fed) => {
      if (round === 3 && s === stage && fed.coordinator() === 'site-1') await fed.crash('site-1')
      if (round === 3 && s === 'committed' && !fed.isUp('site-1')) await fed.restart('site-1')
    })
    const logs = out.fed.ids.map(id => out.records.get(id)!)
    for (const log of logs) expect(log).toEqual(logs[0])
    const log = logs[0]!
    expect(log.map(r => r.round)).toEqual([1, 2, 3, 4, 5])
    // Round 3 was completed by site-2 without the dead coordinator; site-1 caught up and rejoined (and coordinates again) from round 4.
    expect(log[2]!.participants).toEqual(['site-2', 'site-3', 'site-4'])
    expect(log[3]!.participants).toEqual(['site-1', 'site-2', 'site-3', 'site-4'])
    expectNoUpdateCountedTwice(log)
    for (let i = 1; i < log.length; i++) expect(log[i]!.prevHash).not.toBeNull()
  })

  it('killed after announcing but before its own write: the members hold the round and the coordinator catches up', async () => {
    const ref = await run(5)
    const out = await run(5, async (round, s, fed) => {
      if (round === 3 && s === 'announced') await fed.crash('site-1')
      if (round === 4 && s === 'opened' && !fed.isUp('site-1')) await fed.restart('site-1')
    })
    const log = out.records.get('site-1')!
    expect(log.slice(0, 3)).toEqual(ref.records.get('site-1')!.slice(0, 3))
    for (const id of out.fed.ids) expect(out.records.get(id)).toEqual(log)
    expectNoUpdateCountedTwice(log)
  })
})
