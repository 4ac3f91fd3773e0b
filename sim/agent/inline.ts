/**
 * Inline execution: every site in this process (sim/fleet.ts: real createSite,
 * LevelDB and libp2p here), one shaped network for all. Needed by the memory
 * transport, which only connects nodes of one thread, and by tests that tap
 * every frame of every site (test/leak-e2e.test.ts).
 */
import { createSeededRandom, type Logger } from '../../coordinator/components.ts'
import type { RoutingConfig } from '../../coordinator/routing/config.ts'
import type { TensorMap } from '../../protocols/tensors.ts'
import type { LabeledData } from '../../node/data/types.ts'
import type { MoeLearner } from '../../node/federation/learner.ts'
import type { MoeSpec } from '../../node/model/spec.ts'
import type { FederationSettingsInput } from '../../node/site/config.ts'
import { createFleet, type SimSite } from '../fleet.ts'
import type { Topology } from '../topology.ts'
import { attachSiteOps, linkCounter, siteLearner, trainingLearner, type PhaseOps } from './site-ops.ts'
import type { AgentEvents, AgentFleet, SiteAgent, SiteOps } from './types.ts'

export interface AgentFleetInit {
  topology: Topology
  /** The run's temporary folder: stores live under it. */
  dir: string
  settings: FederationSettingsInput
  spec: MoeSpec
  specHash: string
  initial: TensorMap
  slots: readonly number[]
  routing: RoutingConfig
}

export interface InlineFleetComponents extends AgentEvents {
  logger: Logger
  /** Every site's own rows, in topology order (this process holds them all). */
  rows: readonly LabeledData[]
  /** Sees every frame byte each site writes or reads, before encryption. */
  wireTap?: (site: string, direction: 'out' | 'in', peerId: string, protocol: string, bytes: Uint8Array) => void
}

const notUp = (name: string): Error => new RangeError(`site '${name}' is not up`)

export async function createInlineFleet (init: AgentFleetInit, components: InlineFleetComponents): Promise<AgentFleet> {
  const { topology, spec } = init
  const log = components.logger
  const f = topology.federation
  const learners: MoeLearner[] = []
  const slowdown = new Map<string, number>()
  const phase = new Map<string, PhaseOps>()
  const generation = new Map<string, number>()
  const counters = topology.sites.map(() => linkCounter(peer => fleet.siteOfPeer(peer)))

  const learnerFor = (i: number): ReturnType<typeof trainingLearner> => {
    const s = topology.sites[i]!
    const learner = siteLearner(topology, { name: s.name, slot: init.slots[i]!, rows: components.rows[i]! }, { spec, initial: init.initial }, log.child(s.name))
    learners[i] = learner
    return trainingLearner(learner, {
      round: () => (fleet.byName(s.name).site?.status().round ?? 0) + 1,
      slowdown: () => slowdown.get(s.name) ?? 1,
      onTrained: (round, params) => { components.onTrained?.(s.name, { round, params }) }
    })
  }

  const fleet = await createFleet({ topology, dir: init.dir, settings: init.settings, specHash: init.specHash }, {
    clock: { now: () => Date.now() },
    random: createSeededRandom(topology.seed),
    logger: log,
    learnerFor,
    onFrame: (from, toPeer, protocol, bytes) => { counters[fleet.byName(from).index]!.add(toPeer, protocol, bytes) },
    ...(components.wireTap !== undefined ? { wireTap: components.wireTap } : {}),
    onCommit: (name, e) => { components.onCommit?.(name, { round: e.round, participants: e.participants }) },
    attach: async (s, running) => {
      const attached = await attachSiteOps({
        name: s.name,
        slot: init.slots[s.index]!,
        seed: topology.seed,
        spec,
        routing: init.routing,
        members: new Map(fleet.sites.map(o => [o.identity.peerId, o.identity.publicKey])),
        budget: f.privacy.budget ?? undefined
      }, { site: running.site, store: running.store, identity: s.identity, learner: learners[s.index]!, data: components.rows[s.index]!, logger: log.child(`${s.name}:experts`) })
      phase.set(s.name, attached.ops)
      generation.set(s.name, (generation.get(s.name) ?? 0) + 1)
      const off = running.site.on('privacy:refused', ({ round, message }) => { components.onRefused?.(s.name, { round, message }) })
      return async () => { off(); phase.delete(s.name); await attached.detach() }
    }
  })

  const agentOf = (s: SimSite): SiteAgent => {
    const running = (): PhaseOps => { const p = phase.get(s.name); if (p === undefined) throw notUp(s.name); return p }
    const ops: SiteOps = {
      status: async () => await running().status(),
      run: async (args, signal) => await running().run(args, signal),
      contribute: async () => await running().contribute(),
      aggregate: async (args, signal) => await running().aggregate(args, signal),
      dropHeld: async () => { await phase.get(s.name)?.dropHeld() },
      holds: async (args) => await running().holds(args),
      sync: async (args) => { await running().sync(args) },
      releaseTwo: async (args) => await running().releaseTwo(args),
      admit: async (args, signal) => await running().admit(args, signal),
      publish: async (args) => await running().publish(args),
      aggregateAt: async (args) => await running().aggregateAt(args),
      assemblyInputs: async () => await running().assemblyInputs(),
      epsSpent: async () => await running().epsSpent(),
      takeLinkBytes: async () => counters[s.index]!.take(),
      setSlowdown: async ({ factor }) => { slowdown.set(s.name, factor) },
      partition: async ({ groups }) => { fleet.network.partition(groups) }
    }
    return {
      name: s.name,
      index: s.index,
      peerId: s.identity.peerId,
      get state () { return s.state },
      get generation () { return generation.get(s.name) ?? 0 },
      ops,
      // One process holds every site: nothing to measure per site (the report attributes the process's peak evenly).
      peakRssBytes: () => null,
      pids: () => [process.pid],
      exits: () => []
    }
  }
  const agents = fleet.sites.map(agentOf)
  const byName = (name: string): SiteAgent => {
    const a = agents.find(x => x.name === name)
    if (a === undefined) throw new RangeError(`no site named '${name}'`)
    return a
  }

  return {
    execution: 'inline',
    agents,
    byName,
    up: () => agents.filter(a => a.state === 'up'),
    start: fleet.start,
    crash: fleet.crash,
    restart: fleet.restart,
    join: fleet.join,
    leave: fleet.leave,
    partition: async (groups) => { fleet.network.partition(groups) },
    stop: async () => {
      try {
        await fleet.stop()
      } finally {
        for (const l of learners) l?.dispose()
      }
    }
  }
}
