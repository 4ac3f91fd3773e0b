/**
 * forgemesh's own method in a simulator run: the density-routed federated
 * MoE of docs/routing.md, carried by real sites over the shaped mesh.
 *
 *   1. Every site releases its noised global moments (charged to its
 *      ledger) as a signed contribution that only the aggregator (the round
 *      coordinator) fetches; the aggregator verifies and sums them and
 *      publishes the sum and the PCA projection in one signed artifact that
 *      every member fetches (node/federation/global-release.ts: O(1) bytes
 *      per site, not all-to-all).
 *   2. Every site publishes its per label-and-cell components in that
 *      projection inside its signed expert artifact.
 *   3. Rounds: FedAvg (or the topology's strategy) of trunk and head over the
 *      mesh, each site training its own expert on its own rows.
 *   4. Every site publishes its trained expert; a member assembles the MoE
 *      from the committed shared part and the verified artifacts it holds.
 *
 * The simulator also watches every round as an observer (it is told every
 * site's expert after local training, a real deployment is not) to score the
 * federation round by round.
 *
 * The method is written against the site agent (sim/agent/types.ts): the
 * same code drives sites in this process ("execution": "inline") or each in
 * a child process of its own ("process").
 */
import { setMaxListeners } from 'node:events'
import type { LogLevel, Logger } from '../coordinator/components.ts'
import { DP_ROUTING, type RoutingConfig } from '../coordinator/routing/config.ts'
import { buildDensityRouter, type DensityRouter } from '../coordinator/routing/router.ts'
import type { Projection } from '../coordinator/routing/projection.ts'
import type { SiteRelease } from '../coordinator/routing/release.ts'
import { unflattenTensors, type TensorMap } from '../protocols/tensors.ts'
import { evaluateWithGates, installAssembly, type AssembledEval } from '../node/federation/assemble-eval.ts'
import { exchangedPart, recipeInitialParams } from '../node/federation/recipe.ts'
import { componentsFromTensors, componentsToTensors } from '../node/federation/release-tensors.ts'
import { densityGates } from '../node/federation/routing-releases.ts'
import { createMoeModel } from '../node/model/moe.ts'
import { specHash as hashSpec } from '../node/model/spec.ts'
import { createInlineFleet, type AgentFleetInit } from './agent/inline.ts'
import { createProcessFleet } from './agent/process.ts'
import type { AgentEvents, AgentFleet, Execution, SiteAgent } from './agent/types.ts'
import { drive } from './drive.ts'
import { TopologyError } from './errors.ts'
import type { Progress } from './progress.ts'
import type { RoundRecord } from './report/schema.ts'
import type { SimData } from './data.ts'
import { latestBefore, pick, recordAction, waitFor, type SiteEvent } from './moe-helpers.ts'
import { sumReleaseOneAt } from './release-one.ts'
import { siteSettings, slotsOf, specFor } from './site-settings.ts'
import { buildSchedule } from './schedule.ts'
import { executionOf, type Topology } from './topology.ts'

export interface MoeMethodOptions {
  dir: string
  /** Rounds after which the observer scores the federation (always includes the last). */
  evalRounds: ReadonlySet<number>
  routing?: RoutingConfig
  progress?: Progress
  signal?: AbortSignal
  /** Log levels of the sites' child processes passed on to the logger (default warn and error; inline sites log to it directly). */
  siteLogLevels?: LogLevel[]
  /** Sees every frame byte each site writes or reads, before encryption (inline execution only). */
  wireTap?: (site: string, direction: 'out' | 'in', peerId: string, protocol: string, bytes: Uint8Array) => void
}

export type { SiteEvent } from './moe-helpers.ts'

/** Where a site ran: its processes (one per life) and their measured peak RSS. */
export interface SiteRun {
  pids: number[]
  /** Max over the site's lives of its child's peak resident set; null inline (one process holds every site). */
  peakRssBytes: number | null
  exits: Array<{ pid: number, signal: string | null, code: number | null }>
}

export interface MoeMethodResult {
  execution: Execution
  rounds: RoundRecord[]
  /** The MoE as a member assembled it from verified artifacts after the last round. */
  assembled: AssembledEval & { site: string, experts: number }
  events: Map<string, SiteEvent[]>
  epsSpent: Record<string, number>
  wallSeconds: number
  /** Payload bytes after the last commit: every site's final expert (with its release 2) fetched by every member. */
  publication: Pick<RoundRecord, 'bytesPerLink' | 'bytesSent'>
  sites: Record<string, SiteRun>
}

/** How long to wait for the mesh: a full mesh of N sites takes N² handshakes and N fetches per artifact on the same cores. */
const patienceFor = (sites: number) => (baseMs: number): number => baseMs + 4_000 * sites

export async function runNetworkedMoe (topology: Topology, data: SimData, options: MoeMethodOptions, components: { logger: Logger }): Promise<MoeMethodResult> {
  const t0 = performance.now()
  const log = components.logger
  const f = topology.federation
  const execution = executionOf(topology)
  if (execution === 'process' && options.wireTap !== undefined) throw new TopologyError('a wire tap sees frames in this process only: run the topology with "execution": "inline"')
  const routing = options.routing ?? DP_ROUTING
  const spec = specFor(topology)
  const initial = recipeInitialParams(spec)
  /** The shape of the committed aggregate (trunk and head, sorted), as every learner's getShared() has it. */
  const template = exchangedPart(initial)
  const slots = slotsOf(topology)
  const schedule = buildSchedule(topology)
  const patience = patienceFor(topology.sites.length)
  /** Each site's expert after its local training of round r (the observer's view). */
  const expertAt = topology.sites.map(() => new Map<number, TensorMap>())
  /** Each site's release 2, once made (the final artifact carries it again). */
  const released = new Map<string, SiteRelease>()
  /** Site name -> hash of its final expert artifact, once published. */
  const finalPublished = new Map<string, string>()
  /** The aggregator's artifact holding the summed release 1 and the projection. */
  let routingHash: string | undefined
  const indexOf = new Map(topology.sites.map((s, i) => [s.name, i]))

  const settings = siteSettings(topology)

  // ---- per-round observation ------------------------------------------------
  const rounds: RoundRecord[] = []
  const firstCommit = new Set<number>()
  let lastCommitAt = performance.now()
  let roundsSeen = 0
  let fleet: AgentFleet | undefined

  /** Payload bytes per directed link since the last take, from every site (a crashed child's were taken before it died). */
  const takeLinkBytes = async (): Promise<RoundRecord['bytesPerLink']> => {
    const out: RoundRecord['bytesPerLink'] = []
    for (const a of fleet!.agents) for (const [to, bytes] of await a.ops.takeLinkBytes()) out.push({ from: a.name, to, bytes })
    return out.sort((a, b) => a.from === b.from ? (a.to < b.to ? -1 : 1) : (a.from < b.from ? -1 : 1))
  }

  let router: DensityRouter | undefined
  let testGates: Float32Array | undefined
  const evalModel = createMoeModel(spec, initial)
  const epsSpent = async (): Promise<Record<string, number>> => {
    const out: Record<string, number> = {}
    for (const a of fleet!.agents) if (a.state === 'up') out[a.name] = await a.ops.epsSpent()
    return out
  }

  const observe = async (round: number, participants: string[], site: SiteAgent): Promise<void> => {
    const now = performance.now()
    const record: RoundRecord = {
      round,
      accuracy: 0,
      loss: 0,
      bytesPerLink: await takeLinkBytes(),
      bytesSent: 0,
      durationS: (now - lastCommitAt) / 1000,
      participants: [...participants].sort(),
      epsSpent: await epsSpent()
    }
    record.bytesSent = record.bytesPerLink.reduce((a, l) => a + l.bytes, 0)
    lastCommitAt = now
    if (options.evalRounds.has(round) || round === f.rounds) {
      // A participant trained this round before it sent its update; in a child, that news may still be on its way.
      await waitFor(() => participants.every(p => expertAt[indexOf.get(p)!]?.has(round) ?? true), 30_000, `the experts the participants of round ${round} trained`)
        .catch(() => { log.warn('sim.observe-missing-expert', { round }) })
      const scored = await scoreAt(round, site)
      record.accuracy = scored.accuracy
      record.loss = scored.loss
    } else {
      const prev = rounds.at(-1)
      record.accuracy = prev?.accuracy ?? 0
      record.loss = prev?.loss ?? 0
    }
    rounds.push(record)
    options.progress?.round({ round, accuracy: record.accuracy, loss: record.loss, bytesSent: record.bytesSent, durationS: record.durationS, participants: participants.length })
  }

  /** Round 0: the routing releases and first artifacts, scored with the initial parameters. */
  const observeSetup = async (present: SiteAgent[]): Promise<void> => {
    const scored = await scoreAt(0, present[0]!)
    const bytesPerLink = await takeLinkBytes()
    rounds.push({ round: 0, accuracy: scored.accuracy, loss: scored.loss, bytesPerLink, bytesSent: bytesPerLink.reduce((a, l) => a + l.bytes, 0), durationS: (performance.now() - lastCommitAt) / 1000, participants: present.map(s => s.name).sort(), epsSpent: await epsSpent() })
    lastCommitAt = performance.now()
  }

  /** A round's committed aggregate, from the site that committed it or, if that one is down now, any live site holding it. */
  const aggregateOf = async (round: number, site: SiteAgent): Promise<Float32Array> => {
    for (const a of [site, ...fleet!.up().filter(o => o !== site)]) {
      if (a.state !== 'up') continue
      const agg = await a.ops.aggregateAt({ round }).catch(() => undefined)
      if (agg !== undefined) return agg
    }
    throw new TopologyError(`round ${round} has no committed aggregate at ${site.name}`)
  }

  const scoreAt = async (round: number, site: SiteAgent): Promise<AssembledEval> => {
    const aggregate = round === 0 ? undefined : await aggregateOf(round, site)
    const shared = aggregate === undefined ? new Map([...initial].filter(([n]) => template.has(n))) : unflattenTensors(aggregate, template)
    const experts = slots.map((slot, i) => expertAt[i]!.get(round) ?? latestBefore(expertAt[i]!, round) ?? pick(initial, slot))
    const bySlot = new Array<TensorMap>(spec.experts)
    slots.forEach((slot, i) => { bySlot[slot] = experts[i]! })
    for (let e = 0; e < spec.experts; e++) bySlot[e] ??= pick(initial, e)
    installAssembly(evalModel, shared, bySlot)
    return evaluateWithGates(evalModel, data.test, testGates!)
  }

  // ---- the fleet ------------------------------------------------------------
  const events = new Map<string, SiteEvent[]>(topology.sites.map(s => [s.name, []]))
  let pending = Promise.resolve()
  /** When every live site's budget refuses the next round, the federation cannot go on: stop with the reason. */
  const budgetStop = new AbortController()
  const refusals = new Map<number, Set<string>>()
  const agentEvents: AgentEvents = {
    onCommit: (name, e) => {
      if (firstCommit.has(e.round)) return
      firstCommit.add(e.round)
      const site = fleet!.byName(name)
      // Observations run one at a time, in round order.
      pending = pending.then(async () => { await observe(e.round, e.participants, site) }).catch((err: unknown) => { log.error('sim.observe-failed', { round: e.round, error: err instanceof Error ? err.message : String(err) }) })
      roundsSeen = Math.max(roundsSeen, e.round)
    },
    onRefused: (site, { round, message }) => {
      const who = refusals.get(round) ?? new Set<string>()
      refusals.set(round, who)
      who.add(site)
      if (fleet !== undefined && fleet.up().every(s => who.has(s.name)) && !budgetStop.signal.aborted) {
        budgetStop.abort(new TopologyError(`every site's privacy budget refuses round ${round} (${message}); raise federation.privacy.budget, lower the noise cost, or run fewer rounds`))
      }
    },
    onTrained: (site, { round, params }) => { expertAt[indexOf.get(site)!]!.set(round, params) }
  }
  const fleetInit: AgentFleetInit = { topology, dir: options.dir, settings, spec, specHash: hashSpec(spec), initial, slots, routing }
  fleet = execution === 'inline'
    ? await createInlineFleet(fleetInit, { logger: log, rows: data.sites, ...agentEvents, ...(options.wireTap !== undefined ? { wireTap: options.wireTap } : {}) })
    : await createProcessFleet(fleetInit, { logger: log, ...agentEvents, ...(options.signal !== undefined ? { signal: options.signal } : {}), ...(options.siteLogLevels !== undefined ? { forward: options.siteLogLevels } : {}) })

  let result: Omit<MoeMethodResult, 'sites'>
  try {
    options.progress?.start('moe', f.rounds)
    await fleet.start(name => !schedule.lateJoiners.has(name))
    const present = fleet.up()
    await waitForFullMesh(present)

    // Phase 1: every site present at the start releases its global moments to the aggregator,
    // which publishes their sum and the projection; every member fetches that one artifact.
    const setup = await sumReleaseOneAt(present, { federation: topology.name, timeoutMs: patience(60_000), ...(options.signal !== undefined ? { signal: options.signal } : {}) }, { logger: log })
    const projection = setup.projection
    routingHash = setup.hash
    // Phase 2: each site's components in the projection, charged now; they travel once, with
    // the site's trained expert (an earlier artifact would only repeat the untrained weights).
    const seconds = await Promise.all(present.map(async s => await s.ops.releaseTwo({ projection })))
    present.forEach((s, i) => { released.set(s.name, seconds[i]!) })
    refreshRouter(projection)
    log.info('sim.routing-ready', { sites: present.length, components: router!.components.length })
    await observeSetup(present)

    // Federated rounds with the fault schedule.
    const driveSignal = options.signal !== undefined ? AbortSignal.any([options.signal, budgetStop.signal]) : budgetStop.signal
    // Every site's run listens on it: 32 sites are not a listener leak.
    setMaxListeners(0, driveSignal)
    await drive(fleet, { rounds: f.rounds, schedule, signal: driveSignal, catchUpTimeoutMs: patience(60_000) }, {
      committedRound: () => roundsSeen,
      setSlowdown: (site, factor) => { fleet!.byName(site).ops.setSlowdown({ factor }).catch((err: Error) => { log.warn('sim.slowdown-failed', { site, error: err.message }) }) },
      afterJoin: async (name) => {
        // A late joiner takes the projection from the routing artifact it fetched on connecting.
        released.set(name, await fleet!.byName(name).ops.admit({ projection, timeoutMs: patience(60_000) }))
        refreshRouter(projection)
      },
      beforeLeave: async (name) => {
        // A leaving site hands its trained expert over before it goes: the others fetch it while it still serves.
        const leaving = fleet!.byName(name)
        await publishFinal(leaving)
        const hash = finalPublished.get(name)
        const others = fleet!.up().filter(o => o !== leaving)
        if (hash !== undefined && hash !== '') {
          await waitFor(async () => (await Promise.all(others.map(async o => await o.ops.holds({ hashes: [hash] })))).every(h => h.length === 1), patience(60_000), `the federation to fetch ${name}'s final expert`)
        }
      },
      onAction: (action, round) => { recordAction(events, action, round) }
    }, { logger: log })
    if (budgetStop.signal.aborted) throw budgetStop.signal.reason as Error
    await pending

    // Final expert publication and assembly at a member, from verified artifacts only.
    const up = fleet.up()
    let phaseAt = performance.now()
    const phaseMs = (): number => { const now = performance.now(); const ms = Math.round(now - phaseAt); phaseAt = now; return ms }
    await Promise.all(up.map(async s => { await publishFinal(s) }))
    log.info('sim.final-published', { sites: up.length, ms: phaseMs() })
    await waitForFinalArtifacts(up)
    log.info('sim.final-held', { sites: up.length, ms: phaseMs() })
    // A member that finished every round assembles (a site left behind by a failed catch-up does not).
    const reached = await Promise.all(up.map(async s => (await s.ops.status()).round))
    const assembler = up.reduce((best, s, i) => (reached[i]! > reached[up.indexOf(best)]! ? s : best), up[0]!)
    const assembled = await assembleAt(assembler, projection)
    log.info('sim.assembled', { site: assembler.name, experts: assembled.experts, ms: phaseMs() })
    const finalLinks = await takeLinkBytes()
    options.progress?.done()
    result = { execution, rounds, assembled, events, epsSpent: await epsSpent(), wallSeconds: (performance.now() - t0) / 1000, publication: { bytesPerLink: finalLinks, bytesSent: finalLinks.reduce((a, l) => a + l.bytes, 0) } }
  } finally {
    await fleet.stop()
    evalModel.dispose()
  }
  // Peak RSS is read as each child ends, so only now is every life counted.
  const sites = Object.fromEntries(fleet.agents.map(a => [a.name, { pids: a.pids(), peakRssBytes: a.peakRssBytes(), exits: a.exits() }]))
  return { ...result, sites }

  // ---- helpers that need the closure -----------------------------------------

  /**
   * Until every present site has seen all the others live, each remembered once seen: under load a
   * busy site's heartbeats can go stale for a moment, and demanding every view at one instant can
   * then wait forever. A timeout names the sites that never saw them all.
   */
  async function waitForFullMesh (present: SiteAgent[]): Promise<void> {
    const seen = new Map<string, number>()
    const full = (): boolean => present.every(a => (seen.get(a.name) ?? 0) >= present.length - 1)
    try {
      await waitFor(async () => {
        const statuses = await Promise.all(present.map(async a => (seen.get(a.name) ?? 0) >= present.length - 1 ? undefined : await a.ops.status()))
        present.forEach((a, i) => { const st = statuses[i]; if (st !== undefined) seen.set(a.name, Math.max(seen.get(a.name) ?? 0, st.livePeers)) })
        return full()
      }, patience(30_000), 'every site to see the others', 250)
    } catch (err) {
      const behind = present.filter(a => (seen.get(a.name) ?? 0) < present.length - 1).map(a => `${a.name} saw ${seen.get(a.name) ?? 0}`)
      throw new TopologyError(`${(err as Error).message} (of ${present.length - 1} peers: ${behind.join(', ')})`, { cause: err })
    }
  }

  /** The trained expert, published once: at the end, or when its site leaves for good. */
  async function publishFinal (s: SiteAgent): Promise<void> {
    const release = released.get(s.name)
    if (release === undefined || finalPublished.has(s.name)) return
    if (routingHash === undefined) throw new TopologyError('release 2 before the routing projection was published')
    finalPublished.set(s.name, '')
    finalPublished.set(s.name, await s.ops.publish({ version: 3, release, routingHash, trainedRounds: roundsSeen }))
  }

  /** The observer's router for per-round scores: every release made so far, through the float32 tensors an artifact carries. */
  function refreshRouter (projection: Projection): void {
    const releases = [...released.entries()].map(([name, r]) => ({ slot: slots[indexOf.get(name)!]!, r }))
      .sort((a, b) => a.slot - b.slot).map(({ slot, r }) => componentsFromTensors(componentsToTensors(r), slot))
    router = buildDensityRouter(projection, releases, spec.experts, routing)
    testGates = densityGates(router, data.test.x, data.test.n, { topK: spec.topK })
  }

  /**
   * Until every site holds the final expert artifact of every site in `sites`. A site hears an
   * announce only from peers it is connected to at that moment; one that still lacks artifacts
   * after a few seconds asks every live peer for its inventory (what a long-lived node does on a
   * timer). Why by hash, remembered, and all sites at once: with 32 sites in one thread the main
   * thread is saturated by the mesh, so every store read waits a whole busy event-loop turn;
   * polling each site's `usable()` one after the other took minutes (churn-32's "hang").
   */
  async function waitForFinalArtifacts (sites: SiteAgent[]): Promise<void> {
    const wanted = sites.map(s => finalPublished.get(s.name)).filter((h): h is string => h !== undefined && h !== '')
    const missing = new Map(sites.map(s => [s.name, new Set(wanted)]))
    let lastSync = performance.now()
    await waitFor(async () => {
      await Promise.all(sites.map(async (s) => {
        const lacks = missing.get(s.name)!
        if (lacks.size === 0) return
        for (const h of await s.ops.holds({ hashes: [...lacks] })) lacks.delete(h)
      }))
      const behind = sites.filter(s => missing.get(s.name)!.size > 0)
      // Each sync asks every live peer for its inventory: with many sites a storm of them only slows the fetches down.
      if (behind.length > 0 && performance.now() - lastSync > Math.max(5_000, 250 * sites.length)) {
        lastSync = performance.now()
        log.info('sim.final-sync', { behind: behind.map(s => s.name), missing: behind.reduce((a, s) => a + missing.get(s.name)!.size, 0) })
        const live = fleet!.up()
        for (const s of behind) s.ops.sync({ peerIds: live.filter(o => o !== s).map(o => o.peerId) }).catch(() => {})
      }
      return behind.length === 0
    }, patience(60_000) + 150 * sites.length * sites.length, `every site to hold the ${wanted.length} final expert artifacts`, 250) // N² fetches
  }

  /** The MoE as the member assembles it: its committed aggregate and the verified artifacts in its registry, density-routed. */
  async function assembleAt (s: SiteAgent, projection: Projection): Promise<MoeMethodResult['assembled']> {
    const inputs = await s.ops.assemblyInputs()
    const releases = inputs.artifacts.filter(a => a.router.has('router.components.meta')).map(a => componentsFromTensors(a.router, a.slot))
    const memberRouter = buildDensityRouter(projection, releases, spec.experts, routing)
    const shared = unflattenTensors(inputs.aggregate, template)
    const bySlot = Array.from({ length: spec.experts }, (_, e) => inputs.artifacts.find(a => a.slot === e)?.weights ?? pick(initial, e))
    const present = new Set(inputs.artifacts.map(a => a.slot))
    const optOut = new Set(Array.from({ length: spec.experts }, (_, e) => e).filter(e => !present.has(e)))
    const model = createMoeModel(spec, initial)
    try {
      installAssembly(model, shared, bySlot)
      const gates = densityGates(memberRouter, data.test.x, data.test.n, { topK: spec.topK, optOut })
      return { ...evaluateWithGates(model, data.test, gates), site: s.name, experts: present.size }
    } finally {
      model.dispose()
    }
  }
}
