/**
 * An in-process federation for the rounds tests: real round machines, real
 * LevelDB round logs in temp folders, a manual clock, and a linear
 * regression at each site. A "crash" drops everything a site holds in memory
 * and closes its store; a restart reopens the store from disk, resumes from
 * the last committed round and catches up from the most advanced live peer,
 * verifying every fetched round. Messages are function calls; the order of
 * events is what node/ will do over the mesh.
 */
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { createManualClock, createSeededRandom, createSilentLogger, type ManualClock } from '../../coordinator/components.ts'
import { electCoordinator } from '../../coordinator/election.ts'
import { createMembershipView, type MembershipView } from '../../coordinator/membership.ts'
import { createRoundMachine, type ReceiveResult, type RoundMachine } from '../../coordinator/round.ts'
import { createStrategy, type StrategyConfigInput } from '../../coordinator/strategies/registry.ts'
import type { JsonValue } from '../../coordinator/strategies/types.ts'
import { createRoundLog, recordFromOutcome, type CommittedRound, type RoundLog } from '../../node/round-log.ts'
import { openSiteStore, type SiteStore } from '../../node/store.ts'

export interface RegressionSite { x: Float64Array, y: Float64Array, n: number }

/** Seeded non-IID linear regression: each site's features are shifted differently. */
export function makeRegressionData (seed: number, sites: number, dim: number): { data: RegressionSite[], wTrue: Float64Array } {
  const rng = createSeededRandom(seed)
  const wTrue = Float64Array.from({ length: dim }, () => rng.normal())
  const data = Array.from({ length: sites }, (_, s) => {
    const n = 40 + 20 * s
    const x = new Float64Array(n * dim)
    const y = new Float64Array(n)
    for (let i = 0; i < n; i++) {
      let t = 0
      for (let j = 0; j < dim; j++) {
        // The last column is a bias; the others are shifted per site (non-IID).
        const v = j === dim - 1 ? 1 : rng.normal() + 0.5 * (s - sites / 2) * (j % 2 === 0 ? 1 : -1)
        x[i * dim + j] = v
        t += v * wTrue[j]!
      }
      y[i] = t + 0.1 * rng.normal()
    }
    return { x, y, n }
  })
  return { data, wTrue }
}

/** The pooled least-squares optimum, by the normal equations and Gaussian elimination with pivoting. */
export function leastSquares (data: RegressionSite[], dim: number): Float64Array {
  const a = Array.from({ length: dim }, () => new Float64Array(dim + 1))
  for (const { x, y, n } of data) {
    for (let i = 0; i < n; i++) {
      for (let r = 0; r < dim; r++) {
        for (let c = 0; c < dim; c++) a[r]![c]! += x[i * dim + r]! * x[i * dim + c]!
        a[r]![dim]! += x[i * dim + r]! * y[i]!
      }
    }
  }
  for (let col = 0; col < dim; col++) {
    let p = col
    for (let r = col + 1; r < dim; r++) if (Math.abs(a[r]![col]!) > Math.abs(a[p]![col]!)) p = r
    ;[a[col], a[p]] = [a[p]!, a[col]!]
    for (let r = 0; r < dim; r++) {
      if (r === col) continue
      const f = a[r]![col]! / a[col]![col]!
      for (let c = col; c <= dim; c++) a[r]![c]! -= f * a[col]![c]!
    }
  }
  return Float64Array.from({ length: dim }, (_, r) => a[r]![dim]! / a[r]![r]!)
}

/** H full-batch gradient steps on the site's mean squared error; returns delta = start - local. */
export function localDelta (site: RegressionSite, global: Float32Array, steps: number, lr: number): Float32Array {
  const dim = global.length
  const w = Float64Array.from(global)
  const grad = new Float64Array(dim)
  for (let s = 0; s < steps; s++) {
    grad.fill(0)
    for (let i = 0; i < site.n; i++) {
      let err = -site.y[i]!
      for (let j = 0; j < dim; j++) err += site.x[i * dim + j]! * w[j]!
      for (let j = 0; j < dim; j++) grad[j]! += 2 * err * site.x[i * dim + j]! / site.n
    }
    for (let j = 0; j < dim; j++) w[j]! -= lr * grad[j]!
  }
  return Float32Array.from(global, (g, j) => g - w[j]!)
}

export type Stage = 'opened' | 'collected' | 'aggregated' | 'announced' | 'committed'

interface SiteNode { id: string, path: string, store?: SiteStore, log?: RoundLog }

export interface FederationOptions {
  dir: string
  sites: number
  dim: number
  seed: number
  strategy: StrategyConfigInput
  localSteps: number
  localLr: number
  roundTimeoutMs?: number
  heartbeatTimeoutMs?: number
}

export interface Federation {
  readonly ids: string[]
  readonly clock: ManualClock
  start: () => Promise<void>
  /** Runs one round; `onStage` may crash or restart sites between stages. */
  runRound: (onStage?: (stage: Stage, fed: Federation) => Promise<void>) => Promise<CommittedRound>
  crash: (site: string) => Promise<void>
  restart: (site: string) => Promise<void>
  isUp: (site: string) => boolean
  coordinator: () => string
  /** Every result of receiveUpdate, per site, in order. */
  results: Map<string, Array<ReceiveResult['status']>>
  records: (site: string) => Promise<CommittedRound[]>
  global: (site: string) => Promise<Float32Array>
  close: () => Promise<void>
}

export function createFederation (opts: FederationOptions): Federation {
  const { data } = makeRegressionData(opts.seed, opts.sites, opts.dim)
  const ids = data.map((_, i) => `site-${i + 1}`)
  const clock = createManualClock(1_000_000)
  const heartbeatTimeoutMs = opts.heartbeatTimeoutMs ?? 5_000
  const roundTimeoutMs = opts.roundTimeoutMs ?? 60_000
  const view: MembershipView = createMembershipView({ heartbeatTimeoutMs }, { clock })
  const nodes = new Map<string, SiteNode>(ids.map(id => [id, { id, path: join(opts.dir, id) }]))
  const strategy = createStrategy(opts.strategy)
  const results = new Map<string, Array<ReceiveResult['status']>>(ids.map(id => [id, []]))
  let machine: { owner: string, m: RoundMachine } | undefined

  const isUp = (id: string): boolean => nodes.get(id)!.log !== undefined
  const upIds = (): string[] => ids.filter(isUp)
  const logOf = (id: string): RoundLog => nodes.get(id)!.log ?? fail(`${id} is down`)
  const beat = (): void => { for (const id of upIds()) view.heartbeat(id) }
  const lastRound = async (id: string): Promise<number> => (await logOf(id).last())?.round ?? 0
  const globalOf = async (id: string): Promise<Float32Array> => {
    const last = await lastRound(id)
    return last === 0 ? new Float32Array(opts.dim) : (await logOf(id).aggregate(last))!
  }

  /** Catches `id` up from the most advanced live peer, verifying every round. */
  const sync = async (id: string): Promise<void> => {
    let best = id
    for (const peer of upIds()) if (await lastRound(peer) > await lastRound(best)) best = peer
    if (best !== id) await logOf(id).catchUp({ fetchRound: async (r) => await logOf(best).serve(r) })
  }

  const open = async (id: string): Promise<void> => {
    const node = nodes.get(id)!
    mkdirSync(node.path, { recursive: true })
    node.store = await openSiteStore(node.path)
    node.log = createRoundLog(node.store)
  }

  /** Every live participant that the coordinator has not heard from sends its update (a restarted one resends). */
  const deliver = async (m: RoundMachine, resend: Set<string>): Promise<void> => {
    const st = m.status()
    if (st.phase === 'idle') return
    for (const id of st.participants) {
      // A restarted site does not know whether its update arrived, so it sends it again.
      if (!isUp(id) || !(resend.has(id) || (st.phase === 'collecting' && !st.received.includes(id)))) continue
      resend.delete(id)
      const delta = localDelta(data[ids.indexOf(id)]!, await globalOf(id), opts.localSteps, opts.localLr)
      const r = m.receiveUpdate({ round: st.round, site: id, nonce: `${st.round}:${id}`, delta, samples: data[ids.indexOf(id)]!.n })
      results.get(id)!.push(r.status)
    }
  }

  const restarted = new Set<string>()

  const fed: Federation = {
    ids,
    clock,
    start: async () => { for (const id of ids) await open(id) },
    isUp,
    coordinator: () => { beat(); return electCoordinator(view) ?? fail('no live member') },
    results,
    crash: async (id) => {
      const node = nodes.get(id)!
      await node.store?.close()
      node.store = undefined
      node.log = undefined
      if (machine?.owner === id) machine = undefined // its round state dies with it
    },
    restart: async (id) => {
      await open(id)
      await sync(id)
      restarted.add(id)
    },
    runRound: async (onStage = async () => {}) => {
      let coord = fed.coordinator()
      // A dead coordinator is noticed when its heartbeats stop for longer than the timeout.
      while (!isUp(coord)) {
        clock.advance(heartbeatTimeoutMs + 1)
        coord = fed.coordinator()
      }
      await sync(coord)
      for (const id of upIds()) await sync(id)
      if (machine?.owner !== coord) {
        const next = await lastRound(coord) + 1
        machine = { owner: coord, m: createRoundMachine({ specHash: 'linreg', vectorLength: opts.dim, roundTimeoutMs, quorumFraction: 0.5, nextRound: next }, { clock, random: createSeededRandom(opts.seed), logger: createSilentLogger() }) }
      }
      const m = machine.m
      if (m.status().phase === 'idle') m.open(upIds())
      await onStage('opened', fed)
      await deliver(m, restarted)
      await onStage('collected', fed)
      if (machine?.m !== m) return await fed.runRound(onStage) // the coordinator died: a new one reopens the round
      await deliver(m, restarted)
      if (m.status().phase === 'collecting') {
        clock.advance(roundTimeoutMs + 1)
        m.tick()
      }
      const last = await logOf(coord).last()
      const state: JsonValue = last === undefined ? null : (await logOf(coord).strategyState(last.round))!
      const outcome = m.aggregate({ global: await globalOf(coord), strategy, state })
      await onStage('aggregated', fed)
      if (machine?.m !== m) return await fed.runRound(onStage)
      const { record, aggregateBytes, strategyState } = recordFromOutcome(outcome, await logOf(coord).lastHash())
      // Announce first: members verify and write; the coordinator writes after them.
      for (const id of upIds()) {
        if (id === coord) continue
        const verified = await logOf(id).verifyFetched(record, aggregateBytes, strategyState)
        await logOf(id).commit(verified, { strategyState, aggregateBytes })
      }
      await onStage('announced', fed)
      if (!isUp(coord)) return record // the members hold the round; the restarted coordinator catches up
      await logOf(coord).commit(record, { strategyState, aggregateBytes })
      m.commit({ aggregateHash: record.aggregateHash })
      await onStage('committed', fed)
      return record
    },
    records: async (id) => await logOf(id).records(),
    global: globalOf,
    close: async () => { for (const id of ids) await fed.crash(id) }
  }
  return fed
}

function fail (msg: string): never {
  throw new Error(msg)
}
