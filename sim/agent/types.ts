/**
 * The site agent: every operation the simulator's MoE method
 * (sim/moe-method.ts) performs on ONE site, so that the method is written
 * once and runs whether a site lives in this process (inline) or in a child
 * process of its own (process). Everything that crosses this interface is
 * plain data (typed arrays, Maps, strings), so it travels over an IPC channel
 * with advanced serialization as it is; raw rows never do.
 */
import type { Projection } from '../../coordinator/routing/projection.ts'
import type { SiteRelease } from '../../coordinator/routing/release.ts'
import type { TensorMap } from '../../protocols/tensors.ts'

export type SiteState = 'absent' | 'up' | 'down' | 'left'
export type Execution = 'inline' | 'process'

/** What the method asks of a running site's status. */
export interface AgentStatus {
  /** Last committed round (0 before the first). */
  round: number
  /** The elected round coordinator's site name, if any. */
  coordinator: string | undefined
  /** Peers this site currently hears (heartbeats live). */
  livePeers: number
}

/** A site's signed release 1 held for the aggregator. */
export interface ContributionRef { peerId: string, hash: string }

/** What a member's registry holds for assembly: the last committed aggregate and its verified expert artifacts. */
export interface AssemblyInputs {
  round: number
  aggregate: Float32Array
  artifacts: Array<{ slot: number, weights: TensorMap, router: TensorMap }>
}

export interface PublishArgs {
  version: number
  release: SiteRelease
  /** The routing artifact whose projection the release lives in. */
  routingHash: string
  trainedRounds: number
}

/**
 * The per-site phases of the MoE, on a running site. Each takes one argument
 * object (or none) and an optional signal, so an IPC proxy can forward any of
 * them by name.
 */
export interface SiteOps {
  status: () => Promise<AgentStatus>
  /** Takes part in rounds until the site's log holds `untilRound`; resolves with its last committed round. */
  run: (args: { untilRound: number }, signal?: AbortSignal) => Promise<number>
  /** Release 1: charged to the ledger, signed, held in memory for the aggregator. */
  contribute: () => Promise<ContributionRef>
  /** At the aggregator: fetch, verify and sum every contribution; publish the sum and the projection. */
  aggregate: (args: { contributions: ContributionRef[], federation: string }, signal?: AbortSignal) => Promise<{ hash: string, projection: Projection }>
  /** Stops serving the held contribution. */
  dropHeld: () => Promise<void>
  /** Which of these artifact hashes the site's registry holds. */
  holds: (args: { hashes: string[] }) => Promise<string[]>
  /** Asks each of these peers for its artifact inventory (in the background), unless the site is still fetching. */
  sync: (args: { peerIds: string[] }) => Promise<void>
  /** Release 2 in the federation's projection, charged now. */
  releaseTwo: (args: { projection: Projection }) => Promise<SiteRelease>
  /** A late joiner: waits for the routing artifact, checks its projection, makes release 2. */
  admit: (args: { projection: Projection, timeoutMs: number }, signal?: AbortSignal) => Promise<SiteRelease>
  /** Publishes the site's expert with its release 2; resolves with the artifact's hash. */
  publish: (args: PublishArgs) => Promise<string>
  /** The committed aggregate of a round, flat, if the site's log holds it. */
  aggregateAt: (args: { round: number }) => Promise<Float32Array | undefined>
  assemblyInputs: () => Promise<AssemblyInputs>
  /** Epsilon spent so far by the site's ledger. */
  epsSpent: () => Promise<number>
  /** Payload frame bytes this site wrote per destination site since the last call. */
  takeLinkBytes: () => Promise<Map<string, number>>
  /** Local training takes `factor` times as long (1 = normal). */
  setSlowdown: (args: { factor: number }) => Promise<void>
  /** Cuts the shaped links between groups (null heals). */
  partition: (args: { groups: string[][] | null }) => Promise<void>
}

export type OpName = keyof SiteOps
export const OP_NAMES = ['status', 'run', 'contribute', 'aggregate', 'dropHeld', 'holds', 'sync', 'releaseTwo', 'admit', 'publish', 'aggregateAt', 'assemblyInputs', 'epsSpent', 'takeLinkBytes', 'setSlowdown', 'partition'] as const satisfies readonly OpName[]

/** A site's life as the method sees it. */
export interface SiteAgent {
  readonly name: string
  readonly index: number
  readonly peerId: string
  readonly state: SiteState
  /** Bumped at every boot: a run started before a crash belongs to an earlier life. */
  readonly generation: number
  /** The site's operations; they throw while it is not up. */
  readonly ops: SiteOps
  /** Peak resident set: measured (process) over every life so far, or null (inline: one process holds all sites). */
  peakRssBytes: () => number | null
  /** Ids of the processes that ran the site, one per life (inline: this process's). */
  pids: () => number[]
  /** How each child life ended (process mode): its pid and the signal or exit code. */
  exits: () => Array<{ pid: number, signal: string | null, code: number | null }>
}

export interface AgentEvents {
  /** The site committed a round. */
  onCommit?: (site: string, e: { round: number, participants: string[] }) => void
  /** The site's budget refused a round. */
  onRefused?: (site: string, e: { round: number, message: string }) => void
  /** The site finished its local training of `round`, with its expert after it. */
  onTrained?: (site: string, e: { round: number, params: TensorMap }) => void
}

/** The sites of one run and their lives, in either execution mode. */
export interface AgentFleet {
  readonly execution: Execution
  readonly agents: readonly SiteAgent[]
  byName: (name: string) => SiteAgent
  up: () => SiteAgent[]
  /** Starts the sites present from the beginning, one after the other (each bootstraps from those before it). */
  start: (present: (name: string) => boolean) => Promise<void>
  /** Inline: a stop of host, store and exchange. Process: SIGKILL of the child, no goodbye. */
  crash: (name: string) => Promise<void>
  restart: (name: string) => Promise<void>
  join: (name: string) => Promise<void>
  leave: (name: string) => Promise<void>
  partition: (groups: string[][] | null) => Promise<void>
  stop: () => Promise<void>
}
