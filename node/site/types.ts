/**
 * The public shapes of the site runtime: what createSite takes, what it
 * reports (events, status), and the Site handle itself.
 */
import type { Clock, Logger, Random } from '../../coordinator/components.ts'
import type { RoundBytes } from '../../coordinator/compression/accounting.ts'
import type { AuditLog } from '../audit.ts'
import type { SiteIdentity } from '../identity.ts'
import type { PeerTraffic, SiteHost, SiteHostInit, WireTap } from '../mesh/host.ts'
import type { SiteMetrics } from '../metrics.ts'
import type { Spent } from '../privacy/ledger.ts'
import type { RoundLog } from '../round-log.ts'
import type { SiteStore } from '../store.ts'
import type { CommitVia } from './commits.ts'
import type { FederationSettingsInput } from './config.ts'
import type { Learner } from './learner.ts'
import type { SentUpdate } from './member.ts'

export interface SiteInit {
  /** The site's name in the federation (hello, round records). */
  site: string
  identity: SiteIdentity
  /** An open store (the caller closes it), or a folder to open at start and close at stop. */
  store: SiteStore | string
  host: Omit<SiteHostInit, 'identity'>
  federation: FederationSettingsInput
  /** sha256 hex of the model spec: members with another spec are refused. */
  specHash: string
  roles?: string[]
}

export interface SiteComponents {
  clock: Clock
  random: Random
  logger: Logger
  learner: Learner
  wireTap?: WireTap
  /** The service's audit log and metrics, when it owns them; otherwise the site makes its own. */
  audit?: AuditLog
  metrics?: SiteMetrics
}

export interface CommitBytes {
  /** Each participant's update on the wire against float32, from the coordinator's accounting (absent after catch-up). */
  round?: RoundBytes
  /** Frame bytes this site wrote to / read from the mesh since its previous commit (every protocol). */
  sentByThisSite: number
  receivedByThisSite: number
}

export interface CommitEvent { round: number, aggregateHash: string, participants: string[], dropouts: string[], via: CommitVia, bytes: CommitBytes }

export interface SiteEvents {
  commit: CommitEvent
  'round:opened': { round: number, attempt: number, participants: string[] }
  /** An attempt ended without a commit (QuorumNotReachedError, or a participant cut off); the round reopens. */
  'round:aborted': { round: number, attempt: number, reason: string, error?: { name: string, message: string } }
  coordinator: { peerId: string | undefined, site: string | undefined, term: number }
  'update:sent': SentUpdate
  'peer:cut-off': { peerId: string, site: string | undefined, error: { name: string, message: string } }
  'privacy:refused': { round: number, message: string }
}

export interface SiteStatus {
  site: string
  peerId: string
  /** Last committed round (0 before the first). */
  round: number
  coordinator: { peerId: string, site: string, term: number } | null
  peers: Array<{ peerId: string, site?: string, live: boolean, connected: boolean, cutOff: boolean }>
  privacy: { spent: Spent, remaining: Spent } | null
}

export interface Site {
  readonly name: string
  readonly peerId: string
  readonly host: SiteHost
  start: (options?: { signal?: AbortSignal }) => Promise<void>
  stop: () => Promise<void>
  status: () => SiteStatus
  /** Takes part in rounds until this site's log holds `untilRound`; returns the last committed round. */
  run: (options: { untilRound: number, signal?: AbortSignal }) => Promise<number>
  runRounds: (n: number, options?: { signal?: AbortSignal }) => Promise<number>
  on: <K extends keyof SiteEvents>(event: K, listener: (e: SiteEvents[K]) => void) => () => void
  multiaddrs: () => string[]
  traffic: () => Map<string, PeerTraffic>
  /** The durable round log (after start). */
  roundLog: () => RoundLog
}
