/**
 * The seam between the service and the site runtime (node/site): what
 * `node start` needs from a running site, and the adapter that builds one
 * from the config. Everything that knows createSite's init lives here, so
 * the service reads top to bottom without it.
 */
import { createHash } from 'node:crypto'
import type { Libp2pOptions } from 'libp2p'
import { createSeededRandom, hashString32, type Clock, type Logger } from '../coordinator/components.ts'
import type { AuditLog } from './audit.ts'
import { canonicalJson } from './audit.ts'
import { memberAddresses, type LoadedSiteConfig } from './config.ts'
import { ConfigError } from './errors.ts'
import type { SiteIdentity } from './identity.ts'
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

interface BuiltLearner { learner: Learner, specHash: string, backend: string }

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

function buildLearner (config: LoadedSiteConfig): BuiltLearner {
  switch (config.learner.kind) {
    case 'regression': return regressionLearner(config)
    case 'mnist-moe': throw new ConfigError('learner.kind: "mnist-moe" has no site learner in this build yet; use "regression"')
    default: {
      const never: never = config.learner
      throw new ConfigError(`learner.kind: unknown learner ${JSON.stringify(never)}`)
    }
  }
}

export async function createSiteRuntime (config: LoadedSiteConfig, parts: RuntimeParts, components: { clock: Clock, logger: Logger }): Promise<SiteRuntime> {
  const { learner, specHash, backend } = buildLearner(config)
  const { rounds: _rounds, ...federation } = config.federation
  const self = parts.identity.peerId
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
  return {
    peerId: self,
    backend,
    start: async () => { await site.start() },
    stop: async () => {
      await site.stop()
      await learner.dispose?.()
    },
    run: async (target, options) => { await site.run({ untilRound: target, signal: options.signal }) },
    status: () => {
      const s = site.status()
      return { round: s.round, coordinator: s.coordinator?.peerId ?? null, peers: s.peers.filter(p => p.connected).map(p => p.peerId), privacy: s.privacy }
    },
    multiaddrs: () => site.multiaddrs(),
    traffic: () => site.traffic(),
    onCommit: (listener) => site.on('commit', (e) => { listener({ round: e.round, participants: e.participants, bytesSent: e.bytes.sentByThisSite }) })
  }
}
