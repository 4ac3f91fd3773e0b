/**
 * The seam between the service and the site runtime (node/site): what
 * `node start` needs from a running site, and the adapter that builds one
 * from the config. Everything that knows createSite's init lives here, so
 * the service reads top to bottom without it.
 */
import { createHash } from 'node:crypto'
import type { Libp2pOptions } from 'libp2p'
import { createSeededRandom, hashString32, type Clock, type Logger } from '../coordinator/components.ts'
import { DEFAULT_SHARES, DP_ROUTING, EXACT_ROUTING, type RoutingConfig } from '../coordinator/routing/config.ts'
import type { AuditLog } from './audit.ts'
import { canonicalJson } from './audit.ts'
import { memberAddresses, type LoadedSiteConfig } from './config.ts'
import { ConfigError } from './errors.ts'
import { createBatchSource, subset } from './data/batches.ts'
import { loadMnist } from './data/mnist.ts'
import type { LabeledData } from './data/types.ts'
import { createExpertRegistry } from './experts/registry.ts'
import { createMoeLearner, type MoeLearner } from './federation/learner.ts'
import { createMoeSite, type MoeSite } from './federation/moe-site.ts'
import { recipeInitialParams, recipeSpec } from './federation/recipe.ts'
import type { SiteIdentity } from './identity.ts'
import { selectBackend } from './model/backend.ts'
import { specHash as hashSpec, type MoeSpec } from './model/spec.ts'
import { createPrivacyLedger, readLedgerBudget } from './privacy/ledger.ts'
import type { PeerTraffic } from './mesh/host.ts'
import type { SiteMetrics } from './metrics.ts'
import type { Learner } from './site/learner.ts'
import { createRegressionLearner } from './site/regression-learner.ts'
import { createSite } from './site/site.ts'
import type { SiteStore } from './store.ts'

export interface RuntimeStatus {
  /** Last committed round (0 before the first). */
  round: number
  coordinator: string | null
  /** Members connected now. */
  peers: string[]
  privacy: { spent: { epsilon: number, delta: number }, remaining: { epsilon: number, delta: number } } | null
}

export interface RuntimeCommit {
  round: number
  participants: string[]
  bytesSent: number
}

export interface SiteRuntime {
  readonly peerId: string
  /** The compute backend the learner runs on (tfjs backend name, or 'js'). */
  readonly backend: string
  start: () => Promise<void>
  /** Finishes or aborts the current round and leaves the mesh; idempotent. */
  stop: () => Promise<void>
  /** Runs rounds until `target` are committed (or the signal aborts). */
  run: (target: number, options: { signal: AbortSignal }) => Promise<void>
  status: () => RuntimeStatus
  multiaddrs: () => string[]
  traffic: () => Map<string, PeerTraffic>
  onCommit: (listener: (c: RuntimeCommit) => void) => () => void
  predict?: (body: unknown) => Promise<unknown>
}

export interface RuntimeParts {
  identity: SiteIdentity
  psk: Uint8Array | undefined
  store: SiteStore
  audit: AuditLog
  metrics: SiteMetrics
  libp2pMetrics: NonNullable<Libp2pOptions['metrics']>
}

interface BuiltLearner { learner: Learner, specHash: string, backend: string, moe?: MoeParts }
interface MoeParts { learner: MoeLearner, spec: MoeSpec, slot: number, data: LabeledData, routing: RoutingConfig, members: string[], aggregator: string }

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex')

/**
 * The regression learner on seeded synthetic rows: the true weights come from
 * the federation-wide seed, each site's rows from its own, so sites hold
 * different data drawn from one model (y = x·w* + N(0, 0.1²)).
 */
function regressionLearner (config: LoadedSiteConfig): BuiltLearner {
  const l = config.learner
  if (l.kind !== 'regression') throw new Error('unreachable')
  const truth = createSeededRandom(`forgemesh/regression/truth/${l.seed}`)
  const w = Float64Array.from({ length: l.dim }, () => truth.normal())
  const rows = createSeededRandom(`forgemesh/regression/rows/${l.siteSeed ?? hashString32(config.site)}`)
  const x = new Float64Array(l.samples * l.dim)
  const y = new Float64Array(l.samples)
  for (let i = 0; i < l.samples; i++) {
    let dot = 0
    for (let j = 0; j < l.dim; j++) {
      const v = rows.normal()
      x[i * l.dim + j] = v
      dot += v * w[j]!
    }
    y[i] = dot + 0.1 * rows.normal()
  }
  return {
    learner: createRegressionLearner({ x, y, dim: l.dim, lr: l.lr }),
    // What every member must share: the model's shape and where its truth comes from.
    specHash: sha256(canonicalJson({ learner: 'regression', dim: l.dim, seed: l.seed })),
    backend: 'js (float64 regression)'
  }
}

/** The ledger's budget when neither the store nor federation.privacy names one (routing at epsilon 8 spends most of it). */
const DEFAULT_ROUTING_BUDGET = { epsilon: 10, delta: 1e-5 }

/**
 * The flagship MoE learner: this site's share of bundled MNIST (the labels
 * the config names, among the first `trainLimit` images), one expert slot
 * per member. Every member derives the same spec from the federation's
 * config (members, seed), so the spec hash the mesh checks agrees.
 */
async function mnistMoeLearner (config: LoadedSiteConfig, self: string, logger: Logger): Promise<BuiltLearner> {
  const l = config.learner
  if (l.kind !== 'mnist-moe') throw new Error('unreachable')
  const members = [...new Set([self, ...config.mesh.members.map(m => m.peerId)])]
  const ranked = [...members].sort()
  const slot = l.expert ?? ranked.indexOf(self)
  const seed = typeof config.federation.seed === 'number' ? config.federation.seed : hashString32(config.federation.seed)
  const spec = recipeSpec({ inputDim: 784, classes: 10, experts: l.experts ?? members.length, seed })
  const info = await selectBackend(l.backend, logger)
  const all = await loadMnist({ split: 'train', ...(l.trainLimit !== undefined ? { limit: l.trainLimit } : {}) })
  const labels = new Set(l.labels ?? [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
  const rows: number[] = []
  for (let i = 0; i < all.n; i++) if (labels.has(all.y[i]!)) rows.push(i)
  if (rows.length === 0) throw new ConfigError(`learner: the first ${all.n} MNIST images hold none of the labels ${[...labels].join(', ')}; raise learner.trainLimit`)
  const data = subset(all, rows)
  const learner = createMoeLearner({
    spec,
    expert: slot,
    data: createBatchSource(data, { seed: `forgemesh/mnist-moe/${config.site}` }),
    lr: l.lr,
    batchSize: l.batchSize,
    initial: recipeInitialParams(spec)
  }, { logger: logger.child('learner') })
  const base = l.routing.epsilon === null ? EXACT_ROUTING : DP_ROUTING
  const routing: RoutingConfig = {
    ...base,
    minCount: l.routing.minCount,
    privacy: l.routing.epsilon === null ? null : { epsilon: l.routing.epsilon, delta: l.routing.delta, shares: DEFAULT_SHARES }
  }
  // The aggregator of routing release 1: the election's order (priority, then the smaller peer id), from the configs alone.
  const priority = new Map<string, number>([[self, config.mesh.priority], ...config.mesh.members.map(m => [m.peerId, m.priority] as [string, number])])
  const aggregator = [...members].sort((a, b) => (priority.get(b)! - priority.get(a)!) || (a < b ? -1 : 1))[0]!
  logger.info('moe.learner', { slot, experts: spec.experts, rows: data.n, labels: [...labels].sort(), backend: info.name, aggregator })
  return { learner, specHash: hashSpec(spec), backend: `${info.tfBackend} (mnist-moe)`, moe: { learner, spec, slot, data, routing, members, aggregator } }
}

async function buildLearner (config: LoadedSiteConfig, self: string, logger: Logger): Promise<BuiltLearner> {
  switch (config.learner.kind) {
    case 'regression': return regressionLearner(config)
    case 'mnist-moe': return await mnistMoeLearner(config, self, logger)
    default: {
      const never: never = config.learner
      throw new ConfigError(`learner.kind: unknown learner ${JSON.stringify(never)}`)
    }
  }
}

export async function createSiteRuntime (config: LoadedSiteConfig, parts: RuntimeParts, components: { clock: Clock, logger: Logger }): Promise<SiteRuntime> {
  const self = parts.identity.peerId
  const { learner, specHash, backend, moe: moeParts } = await buildLearner(config, self, components.logger)
  const { rounds: _rounds, ...federation } = config.federation
  const priorities: Record<string, number> = { [self]: config.mesh.priority }
  for (const m of config.mesh.members) priorities[m.peerId] = m.priority
  const site = createSite({
    site: config.site,
    identity: parts.identity,
    store: parts.store,
    host: {
      listen: config.mesh.listen,
      bootstrap: config.mesh.members.flatMap(memberAddresses),
      allowlist: config.mesh.members.map(m => m.peerId),
      ...(parts.psk !== undefined ? { psk: parts.psk } : {}),
      insecureOpenMesh: config.mesh.insecureOpenMesh,
      metrics: parts.libp2pMetrics
    },
    federation: { ...federation, priorities },
    specHash
  }, {
    clock: components.clock,
    random: createSeededRandom(`forgemesh/site/${config.site}/${self}`),
    logger: components.logger.child('site'),
    learner,
    audit: parts.audit,
    metrics: parts.metrics
  })
  const moe = moeParts === undefined ? undefined : await moeSite(config, moeParts, site, parts, components)
  return {
    peerId: self,
    backend,
    start: async () => {
      await site.start()
      await moe?.start()
    },
    stop: async () => {
      await moe?.stop()
      await site.stop()
      await learner.dispose?.()
    },
    run: async (target, options) => {
      await moe?.setup(options)
      await site.run({ untilRound: target, signal: options.signal })
      await moe?.finish(target, options)
    },
    status: () => {
      const s = site.status()
      return { round: s.round, coordinator: s.coordinator?.peerId ?? null, peers: s.peers.filter(p => p.connected).map(p => p.peerId), privacy: s.privacy }
    },
    multiaddrs: () => site.multiaddrs(),
    traffic: () => site.traffic(),
    onCommit: (listener) => site.on('commit', (e) => { listener({ round: e.round, participants: e.participants, bytesSent: e.bytes.sentByThisSite }) }),
    ...(moe === undefined ? {} : { predict: moe.predict })
  }
}

/** The MoE program beside the rounds: its registry and ledger on the site's store, its exchange on the site's host. */
async function moeSite (config: LoadedSiteConfig, m: MoeParts, site: ReturnType<typeof createSite>, parts: RuntimeParts, components: { clock: Clock, logger: Logger }): Promise<MoeSite> {
  const l = config.learner
  if (l.kind !== 'mnist-moe') throw new Error('unreachable')
  const wanted = config.federation.privacy.budget ?? DEFAULT_ROUTING_BUDGET
  const budget = (await readLedgerBudget(parts.store)) ?? { epsilonBudget: wanted.epsilon, delta: wanted.delta }
  return createMoeSite({
    site: config.site,
    spec: m.spec,
    slot: m.slot,
    data: m.data,
    members: m.members,
    aggregator: m.aggregator,
    federation: `forgemesh/${String(config.federation.seed)}`,
    routing: m.routing,
    publishEvery: l.publishEvery
  }, {
    site,
    learner: m.learner,
    registry: createExpertRegistry({ store: parts.store, clock: components.clock }),
    identity: parts.identity,
    ledger: m.routing.privacy === null ? null : createPrivacyLedger(parts.store, budget, { clock: components.clock }),
    random: createSeededRandom(`forgemesh/moe/${config.site}/${parts.identity.peerId}`),
    clock: components.clock,
    logger: components.logger.child('moe'),
    audit: parts.audit
  })
}
