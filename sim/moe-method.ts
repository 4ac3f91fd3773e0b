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
 * The simulator also watches every round as an observer (it can see all
 * learners, a real deployment cannot) to score the federation round by round.
 */
import { setMaxListeners } from 'node:events'
import { createSeededRandom, type Logger } from '../coordinator/components.ts'
import { DP_ROUTING, type RoutingConfig } from '../coordinator/routing/config.ts'
import { buildDensityRouter, type DensityRouter } from '../coordinator/routing/router.ts'
import type { Projection } from '../coordinator/routing/projection.ts'
import type { SiteRelease } from '../coordinator/routing/release.ts'
import { unflattenTensors, type TensorMap } from '../protocols/tensors.ts'
import { createBatchSource } from '../node/data/batches.ts'
import { createExpertExchange, type ExpertExchange } from '../node/experts/exchange.ts'
import { createExpertRegistry, type ExpertRegistry } from '../node/experts/registry.ts'
import { evaluateWithGates, installAssembly, type AssembledEval } from '../node/federation/assemble-eval.ts'
import { createMoeLearner, type MoeLearner } from '../node/federation/learner.ts'
import { recipeInitialParams, recipeSpec } from '../node/federation/recipe.ts'
import { isRoutingArtifact, readSummedRelease, sourcesToTensor, withHeldBlobs } from '../node/federation/global-release.ts'
import { componentsFromTensors, componentsToTensors } from '../node/federation/release-tensors.ts'
import { densityGates, releaseSiteComponents, releaseSiteGlobal } from '../node/federation/routing-releases.ts'
import { serveBlobs } from '../node/mesh/transfer.ts'
import { createMoeModel } from '../node/model/moe.ts'
import { specHash as hashSpec, type MoeSpec } from '../node/model/spec.ts'
import { createPrivacyLedger, readLedgerBudget, type PrivacyLedger } from '../node/privacy/ledger.ts'
import type { FederationSettingsInput } from '../node/site/config.ts'
import type { Learner } from '../node/site/learner.ts'
import type { CommitEvent } from '../node/site/site.ts'
import type { SiteStore } from '../node/store.ts'
import { drive } from './drive.ts'
import { TopologyError } from './errors.ts'
import { createFleet, type Fleet, type SimSite } from './fleet.ts'
import type { Progress } from './progress.ts'
import type { RoundRecord } from './report/schema.ts'
import type { SimData } from './data.ts'
import { latestBefore, pick, recordAction, sameProjection, waitFor, type SiteEvent } from './moe-helpers.ts'
import { sleep } from './sleep.ts'
import { sumReleaseOneAt } from './release-one.ts'
import { buildSchedule } from './schedule.ts'
import { expertCount, type Topology } from './topology.ts'

/** Protocols whose frames count as the federation's payload (heartbeats are left out: their number depends on wall time). */
const PAYLOAD_PROTOCOLS = ['/forgemesh/update/', '/forgemesh/model/', '/forgemesh/artifact/', '/forgemesh/experts-announce/', '/forgemesh/secagg/']

/** In each expert artifact: the hash of the routing artifact whose projection its release 2 lives in. */
const PROJECTION_SOURCE = 'router.projection.source'

/** A budget for the routing releases when the topology sets none (DP_ROUTING spends epsilon 8 of it). */
const DEFAULT_ROUTING_BUDGET = { epsilon: 10, delta: 1e-5 }

export interface MoeMethodOptions {
  dir: string
  /** Rounds after which the observer scores the federation (always includes the last). */
  evalRounds: ReadonlySet<number>
  routing?: RoutingConfig
  progress?: Progress
  signal?: AbortSignal
  /** Sees every frame byte each site writes or reads, before encryption. */
  wireTap?: (site: string, direction: 'out' | 'in', peerId: string, protocol: string, bytes: Uint8Array) => void
}

export type { SiteEvent } from './moe-helpers.ts'

export interface MoeMethodResult {
  rounds: RoundRecord[]
  /** The MoE as a member assembled it from verified artifacts after the last round. */
  assembled: AssembledEval & { site: string, experts: number }
  events: Map<string, SiteEvent[]>
  epsSpent: Record<string, number>
  wallSeconds: number
  /** Payload bytes after the last commit: every site's final expert (with its release 2) fetched by every member. */
  publication: Pick<RoundRecord, 'bytesPerLink' | 'bytesSent'>
}

interface SiteExtras { registry: ExpertRegistry, exchange: ExpertExchange, ledger: PrivacyLedger, held: ReturnType<typeof withHeldBlobs> }

export async function runNetworkedMoe (topology: Topology, data: SimData, options: MoeMethodOptions, components: { logger: Logger }): Promise<MoeMethodResult> {
  const t0 = performance.now()
  const log = components.logger
  const f = topology.federation
  const routing = options.routing ?? DP_ROUTING
  const spec = specFor(topology)
  const initial = recipeInitialParams(spec)
  const slots = topology.sites.map((s, i) => {
    if (s.experts.length > 1) throw new TopologyError(`sites[${i}].experts: the simulator's MoE gives each site one expert, '${s.name}' owns ${s.experts.length}`)
    return s.experts[0] ?? i
  })
  const schedule = buildSchedule(topology)
  // One process plays every site: a full mesh of N sites takes N² handshakes and N fetches per artifact on the same cores.
  const patience = (baseMs: number): number => baseMs + 4_000 * topology.sites.length
  const slowdown = new Map<string, number>()
  const learners: MoeLearner[] = []
  /** Each site's expert after its local training of round r (the observer's view). */
  const expertAt = topology.sites.map(() => new Map<number, TensorMap>())
  const extras = new Map<string, SiteExtras>()
  /** Each site's release 2, once made (the final artifact carries it again). */
  const released = new Map<string, SiteRelease>()
  /** Site name -> hash of its final expert artifact, once published. */
  const finalPublished = new Map<string, string>()
  /** The aggregator's artifact holding the summed release 1 and the projection. */
  let routingHash: string | undefined
  let fleet: Fleet | undefined

  const learnerFor = (i: number): Learner => {
    const site = topology.sites[i]!
    const own = data.sites[i]!
    const learner = createMoeLearner({
      spec,
      expert: slots[i]!,
      data: createBatchSource(own, { seed: `${topology.seed}/site-${site.name}` }),
      lr: f.optimizer.lr,
      batchSize: f.batchSize,
      initial
    }, { logger: log.child(site.name) })
    learners[i] = learner
    return {
      get sampleCount () { return learner.sampleCount },
      getShared: () => learner.getShared(),
      setShared: (p) => { learner.setShared(p) },
      trainLocal: async (steps, opts) => {
        const started = performance.now()
        const round = (fleet?.byName(site.name).site?.status().round ?? 0) + 1
        const r = await learner.trainLocal(steps, opts)
        expertAt[i]!.set(round, learner.expertParams())
        const factor = slowdown.get(site.name) ?? 1
        if (factor > 1) await sleep((factor - 1) * (performance.now() - started), opts?.signal)
        return r
      }
    }
  }

  const settings: FederationSettingsInput = {
    strategy: f.strategy,
    compression: f.compression,
    localSteps: f.localSteps,
    quorumFraction: f.quorum,
    minParticipants: Math.max(1, Math.ceil(f.quorum * (topology.sites.length - schedule.lateJoiners.size))),
    roundTimeoutMs: Math.round(f.roundTimeoutS * 1000),
    heartbeatIntervalMs: 500,
    heartbeatTimeoutMs: 4_000,
    retryMs: 100,
    privacy: f.privacy,
    seed: topology.seed
  }

  // ---- per-round observation ------------------------------------------------
  const rounds: RoundRecord[] = []
  const linkBytes = new Map<string, number>()
  const firstCommit = new Map<number, CommitEvent>()
  let lastCommitAt = performance.now()
  let roundsSeen = 0
  const onFrame = (from: string, toPeer: string, protocol: string, bytes: number): void => {
    if (!PAYLOAD_PROTOCOLS.some(p => protocol.startsWith(p))) return
    const to = fleet?.siteOfPeer(toPeer) ?? toPeer
    const key = `${from}\u0000${to}`
    linkBytes.set(key, (linkBytes.get(key) ?? 0) + bytes)
  }
  const takeLinkBytes = (): RoundRecord['bytesPerLink'] => {
    const out = [...linkBytes.entries()].map(([k, bytes]) => { const [from, to] = k.split('\u0000') as [string, string]; return { from, to, bytes } })
      .sort((a, b) => a.from === b.from ? (a.to < b.to ? -1 : 1) : (a.from < b.from ? -1 : 1))
    linkBytes.clear()
    return out
  }

  let router: DensityRouter | undefined
  let testGates: Float32Array | undefined
  const evalModel = createMoeModel(spec, initial)
  const epsSpent = async (): Promise<Record<string, number>> => {
    const out: Record<string, number> = {}
    for (const s of topology.sites) {
      const x = extras.get(s.name)
      if (x !== undefined) out[s.name] = (await x.ledger.status()).spent.epsilon
    }
    return out
  }

  const observe = async (round: number, e: CommitEvent, site: SimSite): Promise<void> => {
    const now = performance.now()
    const record: RoundRecord = {
      round,
      accuracy: 0,
      loss: 0,
      bytesPerLink: takeLinkBytes(),
      bytesSent: 0,
      durationS: (now - lastCommitAt) / 1000,
      participants: [...e.participants].sort(),
      epsSpent: await epsSpent()
    }
    record.bytesSent = record.bytesPerLink.reduce((a, l) => a + l.bytes, 0)
    lastCommitAt = now
    if (options.evalRounds.has(round) || round === f.rounds) {
      const scored = await scoreAt(round, site)
      record.accuracy = scored.accuracy
      record.loss = scored.loss
    } else {
      const prev = rounds.at(-1)
      record.accuracy = prev?.accuracy ?? 0
      record.loss = prev?.loss ?? 0
    }
    rounds.push(record)
    options.progress?.round({ round, accuracy: record.accuracy, loss: record.loss, bytesSent: record.bytesSent, durationS: record.durationS, participants: e.participants.length })
  }

  /** Round 0: the routing releases and first artifacts, scored with the initial parameters. */
  const observeSetup = async (present: SimSite[]): Promise<void> => {
    const scored = await scoreAt(0, present[0]!)
    const bytesPerLink = takeLinkBytes()
    rounds.push({ round: 0, accuracy: scored.accuracy, loss: scored.loss, bytesPerLink, bytesSent: bytesPerLink.reduce((a, l) => a + l.bytes, 0), durationS: (performance.now() - lastCommitAt) / 1000, participants: present.map(s => s.name).sort(), epsSpent: await epsSpent() })
    lastCommitAt = performance.now()
  }

  const scoreAt = async (round: number, site: SimSite): Promise<AssembledEval> => {
    const aggregate = round === 0 ? undefined : await site.site!.roundLog().aggregate(round)
    if (round > 0 && aggregate === undefined) throw new TopologyError(`round ${round} has no committed aggregate at ${site.name}`)
    const template = learners[site.index]!.getShared()
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
  fleet = await createFleet({ topology, dir: options.dir, settings, specHash: hashSpec(spec) }, {
    clock: { now: () => Date.now() },
    random: createSeededRandom(topology.seed),
    logger: log,
    learnerFor,
    onFrame,
    ...(options.wireTap !== undefined ? { wireTap: options.wireTap } : {}),
    onCommit: (name, e) => {
      if (firstCommit.has(e.round)) return
      firstCommit.set(e.round, e)
      const site = fleet!.byName(name)
      // Observations run one at a time, in round order.
      pending = pending.then(async () => { await observe(e.round, e, site) }).catch((err: unknown) => { log.error('sim.observe-failed', { round: e.round, error: err instanceof Error ? err.message : String(err) }) })
      roundsSeen = Math.max(roundsSeen, e.round)
    },
    attach: async (s, running) => {
      const x = await attachExperts(s, running, spec)
      extras.set(s.name, x)
      const off = running.site.on('privacy:refused', ({ round, message }) => { refusedPrivacy(s.name, round, message) })
      return async () => { off(); await x.exchange.stop(); extras.delete(s.name) }
    }
  })

  /** When every live site's budget refuses the next round, the federation cannot go on: stop with the reason. */
  const budgetStop = new AbortController()
  const refusals = new Map<number, Set<string>>()
  const refusedPrivacy = (site: string, round: number, message: string): void => {
    const who = refusals.get(round) ?? new Set<string>()
    refusals.set(round, who)
    who.add(site)
    if (fleet !== undefined && fleet.up().every(s => who.has(s.name)) && !budgetStop.signal.aborted) {
      budgetStop.abort(new TopologyError(`every site's privacy budget refuses round ${round} (${message}); raise federation.privacy.budget, lower the noise cost, or run fewer rounds`))
    }
  }

  const attachExperts = async (s: SimSite, running: { store: SiteStore, site: { host: import('../node/mesh/host.ts').SiteHost } }, moeSpec: MoeSpec): Promise<SiteExtras> => {
    const clock = { now: () => Date.now() }
    const registry = createExpertRegistry({ store: running.store, clock })
    const members = new Map(fleet!.sites.map(o => [o.identity.peerId, o.identity.publicKey]))
    // The site serves its blobs itself: its registry, and before it a routing contribution it holds for the aggregator.
    const exchange = createExpertExchange({ spec: moeSpec, members, serveArtifacts: false }, { host: running.site.host, identity: s.identity, registry, clock, logger: log.child(`${s.name}:experts`) })
    const held = withHeldBlobs(registry.blobSource())
    await serveBlobs(running.site.host, held, { logger: log.child(`${s.name}:blobs`) })
    await exchange.start()
    const budget = await readLedgerBudget(running.store)
    const wanted = f.privacy.budget ?? DEFAULT_ROUTING_BUDGET
    const ledger = createPrivacyLedger(running.store, budget ?? { epsilonBudget: wanted.epsilon, delta: wanted.delta }, { clock })
    return { registry, exchange, ledger, held }
  }

  try {
    options.progress?.start('moe', f.rounds)
    await fleet.start(name => !schedule.lateJoiners.has(name))
    const present = fleet.up()
    await waitFor(() => present.every(s => s.site!.status().peers.filter(p => p.live).length >= present.length - 1), patience(30_000), 'every site to see the others')

    // Phase 1: every site present at the start releases its global moments to the aggregator,
    // which publishes their sum and the projection; every member fetches that one artifact.
    const setup = await sumReleaseOne(present)
    const projection = setup.projection
    routingHash = setup.hash
    // Phase 2: each site's components in the projection, charged now; they travel once, with
    // the site's trained expert (an earlier artifact would only repeat the untrained weights).
    for (const s of present) released.set(s.name, await releaseComponentsOf(s, projection))
    refreshRouter(projection)
    log.info('sim.routing-ready', { sites: present.length, components: router!.components.length })
    await observeSetup(present)

    // Federated rounds with the fault schedule.
    const driveSignal = options.signal !== undefined ? AbortSignal.any([options.signal, budgetStop.signal]) : budgetStop.signal
    // Every site's run listens on it: 32 sites are not a listener leak.
    setMaxListeners(0, driveSignal)
    await drive(fleet, { rounds: f.rounds, schedule, signal: driveSignal, catchUpTimeoutMs: patience(60_000) }, {
      committedRound: () => roundsSeen,
      setSlowdown: (site, factor) => { slowdown.set(site, factor) },
      afterJoin: async (name) => { await admitLateJoiner(fleet!.byName(name), projection) },
      beforeLeave: async (name) => {
        // A leaving site hands its trained expert over before it goes: the others fetch it while it still serves.
        const leaving = fleet!.byName(name)
        await publishFinal(leaving, projection)
        const others = fleet!.up().filter(o => o !== leaving)
        await waitFor(async () => {
          for (const o of others) {
            const has = (await extras.get(o.name)!.registry.usable()).some(r => r.manifest.siteId === leaving.identity.peerId && r.manifest.version === 3)
            if (!has) return false
          }
          return true
        }, patience(60_000), `the federation to fetch ${name}'s final expert`)
      },
      onAction: (action, round) => { recordAction(events, action, round) }
    }, { logger: log })
    if (budgetStop.signal.aborted) throw budgetStop.signal.reason as Error
    await pending

    // Final expert publication and assembly at a member, from verified artifacts only.
    const up = fleet.up()
    let phaseAt = performance.now()
    const phaseMs = (): number => { const now = performance.now(); const ms = Math.round(now - phaseAt); phaseAt = now; return ms }
    for (const s of up) await publishFinal(s, projection)
    log.info('sim.final-published', { sites: up.length, ms: phaseMs() })
    await waitForFinalArtifacts(up)
    log.info('sim.final-held', { sites: up.length, ms: phaseMs() })
    // A member that finished every round assembles (a site left behind by a failed catch-up does not).
    const assembler = up.reduce((best, s) => (s.site!.status().round > best.site!.status().round ? s : best), up[0]!)
    const assembled = await assembleAt(assembler, projection)
    log.info('sim.assembled', { site: assembler.name, experts: assembled.experts, ms: phaseMs() })
    const finalLinks = takeLinkBytes()
    options.progress?.done()
    return { rounds, assembled, events, epsSpent: await epsSpent(), wallSeconds: (performance.now() - t0) / 1000, publication: { bytesPerLink: finalLinks, bytesSent: finalLinks.reduce((a, l) => a + l.bytes, 0) } }
  } finally {
    await fleet.stop()
    evalModel.dispose()
    for (const l of learners) l?.dispose()
  }

  // ---- helpers that need the closure -----------------------------------------
  async function releaseGlobal (s: SimSite): ReturnType<typeof releaseSiteGlobal> {
    const own = data.sites[s.index]!
    return await releaseSiteGlobal({ rows: own.x, n: own.n, dim: own.dim }, routing, { ledger: extras.get(s.name)!.ledger, random: createSeededRandom(`${topology.seed}/routing/${s.name}`) }, { label: s.name })
  }

  async function releaseComponentsOf (s: SimSite, projection: Projection): Promise<SiteRelease> {
    const own = data.sites[s.index]!
    return await releaseSiteComponents({ expert: slots[s.index]!, rows: own.x, labels: own.y, n: own.n }, projection, routing, { ledger: extras.get(s.name)!.ledger, random: createSeededRandom(`${topology.seed}/routing/${s.name}`) }, { label: s.name })
  }

  /** A site that joins after the setup takes the projection from the artifacts it fetched and releases its components. */
  async function admitLateJoiner (s: SimSite, projection: Projection): Promise<void> {
    const x = extras.get(s.name)!
    await waitFor(async () => (await x.registry.usable()).some(r => isRoutingArtifact(r.manifest)), patience(60_000), `${s.name} to fetch the federation's routing artifact`)
    const carried = (await x.registry.usable()).find(r => isRoutingArtifact(r.manifest))!
    const theirs = readSummedRelease((await x.registry.load(carried.hash, { spec })).router).projection
    if (!sameProjection(theirs, projection)) throw new TopologyError(`${s.name} received a projection that differs from the federation's`)
    released.set(s.name, await releaseComponentsOf(s, theirs))
    refreshRouter(projection)
  }

  /** The trained expert, published once: at the end, or when its site leaves for good. */
  async function publishFinal (s: SimSite, projection: Projection): Promise<void> {
    const release = released.get(s.name)
    if (release === undefined || finalPublished.has(s.name)) return
    finalPublished.set(s.name, '')
    finalPublished.set(s.name, await publish(s, 3, { release }))
  }

  /** The observer's router for per-round scores: every release made so far, through the float32 tensors an artifact carries. */
  function refreshRouter (projection: Projection): void {
    const releases = [...released.entries()].map(([name, r]) => ({ slot: slots[fleet!.byName(name).index]!, r }))
      .sort((a, b) => a.slot - b.slot).map(({ slot, r }) => componentsFromTensors(componentsToTensors(r), slot))
    router = buildDensityRouter(projection, releases, spec.experts, routing)
    testGates = densityGates(router, data.test.x, data.test.n, { topK: spec.topK })
  }

  /** The site's expert with its release 2, naming the routing artifact whose projection the release lives in. */
  async function publish (s: SimSite, version: number, what: { release: SiteRelease }): Promise<string> {
    if (routingHash === undefined) throw new TopologyError('release 2 before the routing projection was published')
    const router = new Map([...componentsToTensors(what.release), [PROJECTION_SOURCE, sourcesToTensor([routingHash])] as const])
    const expertId = `${s.name}.expert-${slots[s.index]!}`
    const previous = (await extras.get(s.name)!.registry.list()).filter(r => r.manifest.siteId === s.identity.peerId && r.manifest.expertId === expertId).map(r => r.manifest.version)
    const published = await extras.get(s.name)!.exchange.publish({
      expertId,
      slot: slots[s.index]!,
      version,
      parentVersion: previous.length === 0 ? null : Math.max(...previous),
      sampleCount: data.sites[s.index]!.n,
      metrics: { trainedRounds: roundsSeen },
      params: learners[s.index]!.expertParams(),
      router
    })
    return published.hash
  }

  async function ownArtifact (s: SimSite, version: number): Promise<Awaited<ReturnType<ExpertRegistry['load']>>> {
    const x = extras.get(s.name)!
    const rec = (await x.registry.list()).find(r => r.manifest.siteId === s.identity.peerId && r.manifest.version === version)
    if (rec === undefined) throw new TopologyError(`${s.name} holds no artifact of its own at version ${version}`)
    return await x.registry.load(rec.hash, { spec })
  }

  /**
   * Until every site holds the final expert artifact of every site in `sites`. A site hears an
   * announce only from peers it is connected to at that moment; one that still lacks artifacts
   * after a few seconds asks every live peer for its inventory (what a long-lived node does on a
   * timer). Why by hash, remembered, and all sites at once: with 32 sites the main thread is
   * saturated by the mesh, so every store read waits a whole busy event-loop turn; polling each
   * site's `usable()` one after the other took ~100 sequential reads per site per poll, and a
   * poll of 32 sites took minutes (the "hang" after the last round of churn-32).
   */
  async function waitForFinalArtifacts (sites: SimSite[]): Promise<void> {
    const wanted = sites.map(s => finalPublished.get(s.name)).filter((h): h is string => h !== undefined && h !== '')
    const missing = new Map(sites.map(s => [s.name, new Set(wanted)]))
    let lastSync = performance.now()
    await waitFor(async () => {
      await Promise.all(sites.map(async (s) => {
        const registry = extras.get(s.name)!.registry
        const lacks = missing.get(s.name)!
        await Promise.all([...lacks].map(async (h) => { if (await registry.has(h)) lacks.delete(h) }))
      }))
      const behind = sites.filter(s => missing.get(s.name)!.size > 0)
      if (behind.length > 0 && performance.now() - lastSync > 5_000) {
        lastSync = performance.now()
        log.info('sim.final-sync', { behind: behind.map(s => s.name), missing: behind.reduce((a, s) => a + missing.get(s.name)!.size, 0) })
        for (const s of behind) {
          for (const o of fleet!.up()) if (o !== s) extras.get(s.name)?.exchange.sync(o.identity.peerId).catch(() => {})
        }
      }
      return behind.length === 0
    }, patience(60_000), `every site to hold the ${wanted.length} final expert artifacts`, 250)
  }

  /** The latest verified expert artifact of every site (the routing artifact aside). */
  async function latestArtifacts (s: SimSite): Promise<Array<Awaited<ReturnType<ExpertRegistry['load']>>>> {
    const x = extras.get(s.name)!
    const usable = (await x.registry.usable()).filter(r => !isRoutingArtifact(r.manifest))
    return await Promise.all(usable.sort((a, b) => a.manifest.slot - b.manifest.slot).map(async r => await x.registry.load(r.hash, { spec })))
  }

  async function sumReleaseOne (sites: SimSite[]): Promise<{ projection: Projection, hash: string }> {
    return await sumReleaseOneAt(sites, {
      spec, routing, federation: topology.name, timeoutMs: patience(60_000),
      members: new Map(fleet!.sites.map(o => [o.identity.peerId, o.identity.publicKey])),
      ...(options.signal !== undefined ? { signal: options.signal } : {})
    }, {
      logger: log,
      extrasOf: (s) => extras.get(s.name)!,
      contribution: async (s) => ({ slot: slots[s.index]!, sampleCount: data.sites[s.index]!.n, params: learners[s.index]!.expertParams(), moments: await releaseGlobal(s) })
    })
  }

  async function routerAt (s: SimSite, projection: Projection): Promise<DensityRouter> {
    const releases = (await latestArtifacts(s)).filter(a => a.router.has('router.components.meta')).map(a => componentsFromTensors(a.router, a.manifest.slot))
    return buildDensityRouter(projection, releases, spec.experts, routing)
  }

  async function assembleAt (s: SimSite, projection: Projection): Promise<MoeMethodResult['assembled']> {
    const artifacts = await latestArtifacts(s)
    const memberRouter = await routerAt(s, projection)
    const last = await s.site!.roundLog().last()
    if (last === undefined) throw new TopologyError(`${s.name} committed no round`)
    const shared = unflattenTensors((await s.site!.roundLog().aggregate(last.round))!, learners[s.index]!.getShared())
    const bySlot = Array.from({ length: spec.experts }, (_, e) => artifacts.find(a => a.manifest.slot === e)?.weights ?? pick(initial, e))
    const present = new Set(artifacts.map(a => a.manifest.slot))
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

export function specFor (topology: Topology): MoeSpec {
  const m = topology.federation.model
  return recipeSpec({ inputDim: m.inputDim, classes: m.classes, experts: expertCount(topology), seed: m.seed, width: m.width, expertHidden: m.expertHidden, topK: m.topK })
}
