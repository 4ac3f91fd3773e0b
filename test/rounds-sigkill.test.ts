import { fork, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { createManualClock, createSeededRandom, createSilentLogger } from '../coordinator/components.ts'
import { createRoundMachine, type ReceiveResult } from '../coordinator/round.ts'
import { createStrategy } from '../coordinator/strategies/registry.ts'
import { createRoundLog, recordFromOutcome, type CommittedRound, type RoundLog } from '../node/round-log.ts'
import { openSiteStore, type SiteStore } from '../node/store.ts'
import { localDelta, makeRegressionData } from './support/rounds-federation.ts'

// The coordinator runs here with its own LevelDB log; site-1 and site-2 are
// computed in this process; site-3 is a real child process with its own
// LevelDB, killed with SIGKILL at each stage of a round and restarted.
const CHILD = fileURLToPath(new URL('./support/rounds-site-child.ts', import.meta.url))
const DATA = { seed: 7, sites: 3, dim: 6, localSteps: 1, localLr: 0.2 }
const ROUNDS = 6
const root = mkdtempSync(join(tmpdir(), 'fm-sigkill-'))
afterAll(() => { rmSync(root, { recursive: true, force: true }) })

type Stage = 'opened' | 'sent' | 'committing' | 'committed'

class Site {
  private child!: ChildProcess
  private nextId = 1
  private readonly waiting = new Map<number, (body: unknown) => void>()
  constructor (private readonly dir: string, private readonly serve: RoundLog) {}

  async start (): Promise<void> {
    this.child = fork(CHILD, [this.dir, '2'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error('site-3 did not start within 30 s')) }, 30_000)
      this.child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`site-3 exited with ${String(code)} before it was ready`)) })
      this.child.on('message', (m: { ready?: true, id?: number, body?: unknown, fetch?: number }) => {
        if (m.ready === true) { clearTimeout(timer); resolve(); return }
        if (m.fetch !== undefined) { void this.answerFetch(m.id!, m.fetch); return }
        this.waiting.get(m.id!)?.(m.body)
        this.waiting.delete(m.id!)
      })
    })
    await ready
    await this.call({ op: 'catch-up' })
  }

  private async answerFetch (id: number, round: number): Promise<void> {
    const f = await this.serve.serve(round)
    this.child.send({ id, op: 'fetched', round: f === undefined ? null : { record: f.record, aggregate: Buffer.from(f.aggregateBytes).toString('base64'), state: f.strategyState } })
  }

  /** Sends a request; resolves with the answer, or never if the child is killed first. */
  send (msg: Record<string, unknown>): Promise<unknown> {
    const id = this.nextId++
    const answer = new Promise<unknown>(resolve => { this.waiting.set(id, resolve) })
    this.child.send({ id, ...msg })
    return answer
  }

  async call (msg: Record<string, unknown>): Promise<unknown> {
    const body = await this.send(msg)
    if (body !== null && typeof body === 'object' && 'error' in body) throw new Error(`site-3: ${String((body as { error: unknown }).error)}`)
    return body
  }

  async kill (): Promise<void> {
    const exited = new Promise(resolve => this.child.once('exit', resolve))
    this.child.kill('SIGKILL')
    await exited
    this.waiting.clear()
  }

  async stop (): Promise<void> {
    const exited = new Promise(resolve => this.child.once('exit', resolve))
    this.child.disconnect()
    await exited
  }
}

async function federation (name: string, killAt: Map<number, Stage>): Promise<{ coordinator: CommittedRound[], site3: CommittedRound[], results: Array<ReceiveResult['status']> }> {
  const { data } = makeRegressionData(DATA.seed, DATA.sites, DATA.dim)
  const store: SiteStore = await openSiteStore(join(root, name, 'coordinator'))
  const log = createRoundLog(store)
  const site3 = new Site(join(root, name, 'site-3'), log)
  await site3.start()
  const machine = createRoundMachine({ specHash: 'linreg', vectorLength: DATA.dim, roundTimeoutMs: 60_000 }, { clock: createManualClock(0), random: createSeededRandom(DATA.seed), logger: createSilentLogger() })
  const strategy = createStrategy({ kind: 'fedavg' })
  const results: Array<ReceiveResult['status']> = []
  const killAndRestart = async (): Promise<void> => { await site3.kill(); await site3.start() }
  const sendSite3 = async (): Promise<void> => {
    const u = await site3.call({ op: 'update' }) as { round: number, site: string, nonce: string, delta: string, samples: number }
    const delta = new Float32Array(new Uint8Array(Buffer.from(u.delta, 'base64')).buffer)
    results.push(machine.receiveUpdate({ round: u.round, site: u.site, nonce: u.nonce, delta, samples: u.samples }).status)
  }

  for (let r = 1; r <= ROUNDS; r++) {
    const stage = killAt.get(r)
    const global = r === 1 ? new Float32Array(DATA.dim) : (await log.aggregate(r - 1))!
    machine.open(['site-1', 'site-2', 'site-3'])
    if (stage === 'opened') await killAndRestart()
    for (const i of [0, 1]) machine.receiveUpdate({ round: r, site: `site-${i + 1}`, nonce: `${r}:site-${i + 1}`, delta: localDelta(data[i]!, global, DATA.localSteps, DATA.localLr), samples: data[i]!.n })
    await sendSite3()
    if (stage === 'sent') {
      await killAndRestart()
      await sendSite3() // it cannot know its update arrived, so it sends it again
    }
    const outcome = machine.aggregate({ global, strategy, state: r === 1 ? null : (await log.strategyState(r - 1))! })
    const { record, aggregateBytes, strategyState } = recordFromOutcome(outcome, await log.lastHash())
    const announce = { op: 'commit', record, aggregate: Buffer.from(aggregateBytes).toString('base64'), state: strategyState }
    if (stage === 'committing') {
      void site3.send(announce) // killed while it may be writing: the batch lands whole or not at all
      await killAndRestart()
    }
    const answer = await site3.call(announce)
    if (stage === 'committing') console.log(`site-3 killed during the announcement of round ${r}: after the restart the round was ${answer === 'exists' ? 'already on disk' : 'not yet on disk'}`)
    expect(answer).toEqual(stage === 'committing' ? expect.stringMatching(/^(committed|exists)$/) : 'committed')
    await log.commit(record, { strategyState, aggregateBytes })
    machine.commit({ aggregateHash: record.aggregateHash })
    if (stage === 'committed') await killAndRestart()
  }
  const out = { coordinator: await log.records(), site3: await site3.call({ op: 'records' }) as CommittedRound[], results }
  await site3.stop()
  await store.close()
  return out
}

describe('site killed with SIGKILL at each stage of a round (real child process, real LevelDB)', () => {
  it('restarts, resumes from its log, and ends with the fault-free run\'s log; no update counted twice', async () => {
    const reference = await federation('reference', new Map())
    const faulty = await federation('faulty', new Map<number, Stage>([[2, 'opened'], [3, 'sent'], [4, 'committing'], [5, 'committed']]))
    expect(reference.site3).toEqual(reference.coordinator)
    expect(faulty.coordinator).toEqual(reference.coordinator)
    expect(faulty.site3).toEqual(reference.coordinator)
    expect(faulty.coordinator.map(r => r.round)).toEqual([1, 2, 3, 4, 5, 6])
    for (const r of faulty.coordinator) expect(r.updates.map(u => u.site)).toEqual(['site-1', 'site-2', 'site-3'])
    // Round 3's resend after the restart was a duplicate: acknowledged, not counted.
    expect(faulty.results).toEqual(['accepted', 'accepted', 'accepted', 'duplicate', 'accepted', 'accepted', 'accepted'])
  })
})
