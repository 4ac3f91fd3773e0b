/**
 * The seam between the service and the site runtime (node/site): what
 * `node start` needs from a running site, and the adapter that builds one
 * from the config. Everything that knows createSite's init lives here, so
 * the service reads top to bottom without it.
 */
import type { Libp2pOptions } from 'libp2p'
import type { Clock, Logger } from '../coordinator/components.ts'
import type { AuditLog } from './audit.ts'
import type { LoadedSiteConfig } from './config.ts'
import { ConfigError } from './errors.ts'
import type { SiteIdentity } from './identity.ts'
import type { PeerTraffic } from './mesh/host.ts'
import type { SiteMetrics } from './metrics.ts'
import type { SiteStore } from './store.ts'

export interface RuntimeStatus {
  /** Last committed round (0 before the first). */
  round: number
  coordinator: string | null
  /** Members connected now. */
  peers: string[]
  privacy: { spent: { epsilon: number, delta: number }, remaining: { epsilon: number, delta: number } } | null
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
  experts: () => string[]
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

export async function createSiteRuntime (config: LoadedSiteConfig, _parts: RuntimeParts, _components: { clock: Clock, logger: Logger }): Promise<SiteRuntime> {
  throw new ConfigError(`learner.kind: ${config.learner.kind}: the site runtime (node/site) is not in this build yet`)
}
