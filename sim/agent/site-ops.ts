/**
 * The MoE's per-site phases on one running site: what sim/moe-method.ts asks
 * of a site, written once for both execution modes. The inline agent calls
 * these in this process; a site's child process (sim/agent/child.ts) calls
 * the very same functions and answers over IPC.
 */
import { createSeededRandom, type Logger } from '../../coordinator/components.ts'
import type { RoutingConfig } from '../../coordinator/routing/config.ts'
import type { Projection } from '../../coordinator/routing/projection.ts'
import type { TensorMap } from '../../protocols/tensors.ts'
import { createBatchSource } from '../../node/data/batches.ts'
import type { LabeledData } from '../../node/data/types.ts'
import type { MemberKeys, VerifiedArtifact } from '../../node/experts/artifact.ts'
import { createExpertExchange } from '../../node/experts/exchange.ts'
import { createExpertRegistry } from '../../node/experts/registry.ts'
import { buildContribution, collectContributions, isRoutingArtifact, readSummedRelease, sourcesToTensor, summedRelease, withHeldBlobs, routingPublication } from '../../node/federation/global-release.ts'
import { createMoeLearner, type MoeLearner } from '../../node/federation/learner.ts'
import { componentsToTensors } from '../../node/federation/release-tensors.ts'
import { releaseSiteComponents, releaseSiteGlobal } from '../../node/federation/routing-releases.ts'
import type { SiteIdentity } from '../../node/identity.ts'
import { fetchBlob, serveBlobs } from '../../node/mesh/transfer.ts'
import type { MoeSpec } from '../../node/model/spec.ts'
import { createPrivacyLedger, readLedgerBudget } from '../../node/privacy/ledger.ts'
import type { Learner } from '../../node/site/learner.ts'
import type { Site } from '../../node/site/site.ts'
import type { SiteStore } from '../../node/store.ts'
import { TopologyError } from '../errors.ts'
import { sameProjection, waitFor } from '../moe-helpers.ts'
import { sleep } from '../sleep.ts'
import type { Topology } from '../topology.ts'
import type { SiteOps } from './types.ts'

/** Protocols whose frames count as the federation's payload (heartbeats are left out: their number depends on wall time). */
export const PAYLOAD_PROTOCOLS = ['/forgemesh/update/', '/forgemesh/model/', '/forgemesh/artifact/', '/forgemesh/experts-announce/', '/forgemesh/secagg/']
export const isPayload = (protocol: string): boolean => PAYLOAD_PROTOCOLS.some(p => protocol.startsWith(p))

/** In each expert artifact: the hash of the routing artifact whose projection its release 2 lives in. */
const PROJECTION_SOURCE = 'router.projection.source'

/** A budget for the routing releases when the topology sets none (DP_ROUTING spends epsilon 8 of it). */
const DEFAULT_ROUTING_BUDGET = { epsilon: 10, delta: 1e-5 }

export interface SiteOpsInit {
  name: string
  slot: number
  /** The topology's seed: the routing releases' noise is seeded per site from it. */
  seed: number
  spec: MoeSpec
  routing: RoutingConfig
  /** Every member's public key, by peer id. */
  members: MemberKeys
  /** The topology's privacy budget, if any. */
  budget: { epsilon: number, delta: number } | undefined
}

export interface SiteOpsComponents {
  site: Site
  store: SiteStore
  identity: SiteIdentity
  learner: MoeLearner
  /** The site's own rows (never leave the site; only DP releases and weights do). */
  data: LabeledData
  logger: Logger
}

export type PhaseOps = Omit<SiteOps, 'takeLinkBytes' | 'setSlowdown' | 'partition'>

/** Hangs the expert exchange, blob server and ledger on a started site; returns its phase operations and a detach. */
export async function attachSiteOps (init: SiteOpsInit, components: SiteOpsComponents): Promise<{ ops: PhaseOps, detach: () => Promise<void> }> {
  const { site, store, identity, learner, data } = components
  const log = components.logger
  const { spec, routing } = init
  const clock = { now: () => Date.now() }
  const registry = createExpertRegistry({ store, clock })
  // The site serves its blobs itself: its registry, and before it a routing contribution it holds for the aggregator.
  const exchange = createExpertExchange({ spec, members: init.members, serveArtifacts: false }, { host: site.host, identity, registry, clock, logger: log.child('experts') })
  const held = withHeldBlobs(registry.blobSource())
  await serveBlobs(site.host, held, { logger: log.child('blobs') })
  await exchange.start()
  const budget = await readLedgerBudget(store)
  const wanted = init.budget ?? DEFAULT_ROUTING_BUDGET
  const ledger = createPrivacyLedger(store, budget ?? { epsilonBudget: wanted.epsilon, delta: wanted.delta }, { clock })
  const noise = (): ReturnType<typeof createSeededRandom> => createSeededRandom(`${init.seed}/routing/${init.name}`)
  let mine: VerifiedArtifact | undefined

  const releaseTwo = async (projection: Projection): ReturnType<PhaseOps['releaseTwo']> =>
    await releaseSiteComponents({ expert: init.slot, rows: data.x, labels: data.y, n: data.n }, projection, routing, { ledger, random: noise() }, { label: init.name })

  const ops: PhaseOps = {
    status: async () => {
      const s = site.status()
      return { round: s.round, coordinator: s.coordinator?.site, livePeers: s.peers.filter(p => p.live).length }
    },
    run: async ({ untilRound }, signal) => await site.run({ untilRound, ...(signal !== undefined ? { signal } : {}) }),
    contribute: async () => {
      const moments = await releaseSiteGlobal({ rows: data.x, n: data.n, dim: data.dim }, routing, { ledger, random: noise() }, { label: init.name })
      mine = await buildContribution({ identity, spec, site: init.name, slot: init.slot, sampleCount: data.n, params: learner.expertParams(), moments }, { clock })
      held.hold(mine.hash, mine.bytes)
      return { peerId: identity.peerId, hash: mine.hash }
    },
    aggregate: async ({ contributions, federation }, signal) => {
      const own = mine
      const collected = await collectContributions(contributions, { spec, members: init.members }, async (c, sig) => {
        // The aggregator's own contribution needs no network.
        if (c.peerId === identity.peerId && own !== undefined && c.hash === own.hash) return own.bytes
        const got = await fetchBlob(site.host, c.peerId, c.hash, { ...(sig !== undefined ? { signal: sig } : {}), logger: log })
        return got.bytes!
      }, signal !== undefined ? { signal } : {})
      const summed = summedRelease(collected, routing, federation)
      const published = await exchange.publish(routingPublication(init.name, init.slot, summed, collected.length, learner.expertParams()), signal !== undefined ? { signal } : {})
      return { hash: published.hash, projection: summed.projection }
    },
    dropHeld: async () => { if (mine !== undefined) held.drop(mine.hash) },
    holds: async ({ hashes }) => {
      const has = await Promise.all(hashes.map(async h => await registry.has(h)))
      return hashes.filter((_, i) => has[i])
    },
    sync: async ({ peerIds }) => {
      // A site still fetching what it was announced is not stuck; asking every peer for its inventory now only adds load.
      const { active, queued } = exchange.stats()
      if (active + queued > 0) return
      for (const p of peerIds) exchange.sync(p).catch(() => {})
    },
    releaseTwo: async ({ projection }) => await releaseTwo(projection),
    admit: async ({ projection, timeoutMs }) => {
      // A site that joins after the setup takes the projection from the routing artifact it fetched.
      await waitFor(async () => (await registry.usable()).some(r => isRoutingArtifact(r.manifest)), timeoutMs, `${init.name} to fetch the federation's routing artifact`)
      const carried = (await registry.usable()).find(r => isRoutingArtifact(r.manifest))!
      const theirs = readSummedRelease((await registry.load(carried.hash, { spec })).router).projection
      if (!sameProjection(theirs, projection)) throw new TopologyError(`${init.name} received a projection that differs from the federation's`)
      return await releaseTwo(theirs)
    },
    publish: async ({ version, release, routingHash, trainedRounds }) => {
      const router = new Map([...componentsToTensors(release), [PROJECTION_SOURCE, sourcesToTensor([routingHash])] as const])
      const expertId = `${init.name}.expert-${init.slot}`
      const previous = (await registry.list()).filter(r => r.manifest.siteId === identity.peerId && r.manifest.expertId === expertId).map(r => r.manifest.version)
      const published = await exchange.publish({
        expertId,
        slot: init.slot,
        version,
        parentVersion: previous.length === 0 ? null : Math.max(...previous),
        sampleCount: data.n,
        metrics: { trainedRounds },
        params: learner.expertParams(),
        router
      })
      return published.hash
    },
    aggregateAt: async ({ round }) => await site.roundLog().aggregate(round),
    assemblyInputs: async () => {
      const last = await site.roundLog().last()
      if (last === undefined) throw new TopologyError(`${init.name} committed no round`)
      const aggregate = await site.roundLog().aggregate(last.round)
      if (aggregate === undefined) throw new TopologyError(`round ${last.round} has no committed aggregate at ${init.name}`)
      // The latest verified expert artifact of every site (the routing artifact aside), in slot order.
      const usable = (await registry.usable()).filter(r => !isRoutingArtifact(r.manifest)).sort((a, b) => a.manifest.slot - b.manifest.slot)
      const loaded = await Promise.all(usable.map(async r => await registry.load(r.hash, { spec })))
      return { round: last.round, aggregate, artifacts: loaded.map(a => ({ slot: a.manifest.slot, weights: a.weights, router: a.router })) }
    },
    epsSpent: async () => (await ledger.status()).spent.epsilon
  }
  return { ops, detach: async () => { await exchange.stop() } }
}

/**
 * The learner a site's node drives, around the site's MoE learner: it tells
 * the observer each expert after local training, and stretches training by
 * the site's slowdown factor.
 */
/** A site's MoE learner over its own rows: the same in the simulator's process and in a site's child. */
export function siteLearner (topology: Topology, site: { name: string, slot: number, rows: LabeledData }, model: { spec: MoeSpec, initial: TensorMap }, logger: Logger): MoeLearner {
  const f = topology.federation
  return createMoeLearner({
    spec: model.spec,
    expert: site.slot,
    data: createBatchSource(site.rows, { seed: `${topology.seed}/site-${site.name}` }),
    lr: f.optimizer.lr,
    batchSize: f.batchSize,
    initial: model.initial
  }, { logger })
}

export function trainingLearner (learner: MoeLearner, hooks: { round: () => number, slowdown: () => number, onTrained: (round: number, params: TensorMap) => void }): Learner {
  return {
    get sampleCount () { return learner.sampleCount },
    getShared: () => learner.getShared(),
    setShared: (p) => { learner.setShared(p) },
    trainLocal: async (steps, opts) => {
      const started = performance.now()
      const round = hooks.round()
      const r = await learner.trainLocal(steps, opts)
      hooks.onTrained(round, learner.expertParams())
      const factor = hooks.slowdown()
      if (factor > 1) await sleep((factor - 1) * (performance.now() - started), opts?.signal)
      return r
    }
  }
}

/** Payload bytes one site writes, per destination site, between two takes. */
export function linkCounter (siteOfPeer: (peerId: string) => string | undefined): { add: (toPeer: string, protocol: string, bytes: number) => void, take: () => Map<string, number> } {
  let counts = new Map<string, number>()
  return {
    add: (toPeer, protocol, bytes) => {
      if (!isPayload(protocol)) return
      const to = siteOfPeer(toPeer) ?? toPeer
      counts.set(to, (counts.get(to) ?? 0) + bytes)
    },
    take: () => { const out = counts; counts = new Map(); return out }
  }
}
