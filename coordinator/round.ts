/**
 * The round state machine, pure (clock, randomness and logger come in):
 *
 *   idle --open--> collecting --all in | deadline with quorum--> ready
 *   ready --aggregate--> aggregated --commit--> idle (next round)
 *   collecting --deadline without quorum--> quorum-missed, reopened (attempt + 1)
 *
 * It never does I/O. It emits plain data events that node/ turns into
 * network messages, and it hands the aggregate to node/ to write durably
 * before `commit` announces it. The round seed depends only on the round id
 * (a fork of the federation's random source), so a new coordinator elected
 * mid-round reopens the same round with the same seed and deterministic
 * sites produce the same updates again.
 *
 * Counting each update once: an update is keyed by (round, site, nonce). The
 * same key again is a `duplicate` (acknowledged, not counted); the same site
 * with another nonce is rejected. When a round is reopened nothing of the
 * failed attempt was committed, so its updates are dropped and may be sent
 * again; they then count once, in the attempt that commits.
 */
import { z } from 'zod'
import { describeIssues } from '../protocols/validation.ts'
import type { Clock, Logger, Random } from './components.ts'
import { summarizeRoundBytes, type RoundBytes } from './compression/accounting.ts'
import { InvalidArgumentError, QuorumNotReachedError, RoundPhaseError } from './errors.ts'
import type { JsonValue, Strategy } from './strategies/types.ts'

export const RoundConfigSchema = z.object({
  /** Hash of the model spec: a site training another model must not contribute. */
  specHash: z.string().min(1),
  vectorLength: z.number().int().positive(),
  roundTimeoutMs: z.number().positive().finite(),
  /** Share of the invited participants whose updates make a quorum. */
  quorumFraction: z.number().gt(0).max(1).default(0.5),
  /** And never fewer than this many updates. */
  minUpdates: z.number().int().positive().default(1),
  /** The round this machine opens first: the last committed round + 1. */
  nextRound: z.number().int().positive().default(1)
}).strict()
export type RoundConfig = z.infer<typeof RoundConfigSchema>

export type RoundPhase = 'idle' | 'collecting' | 'ready' | 'aggregated'

export type RejectReason = 'stale-round' | 'future-round' | 'not-collecting' | 'past-deadline' | 'not-a-participant' |
'already-submitted' | 'wrong-length' | 'non-finite' | 'bad-samples' | 'bad-nonce'

export interface UpdateInput {
  round: number
  site: string
  nonce: string
  delta: Float32Array
  samples: number
  /** Bytes the update took on the wire (compressed); defaults to plain float32. */
  wireBytes?: number
}

export type ReceiveResult =
  | { status: 'accepted', received: number, required: number }
  | { status: 'duplicate' }
  | { status: 'rejected', reason: RejectReason, message: string }

export interface OpenEvent { type: 'open', round: number, attempt: number, participants: string[], deadline: number, specHash: string, seed: number, required: number }
export interface ClosedEvent { type: 'closed', round: number, attempt: number, reason: 'all-in' | 'deadline', contributors: string[], dropouts: string[] }
export interface QuorumMissedEvent { type: 'quorum-missed', round: number, attempt: number, received: number, required: number, error: { name: string, message: string } }
export interface AbortedEvent { type: 'aborted', round: number, attempt: number, reason: string }
export interface AnnounceEvent { type: 'announce', round: number, aggregateHash: string, participants: string[], dropouts: string[], specHash: string, seed: number, strategy: string }
export type RoundEvent = OpenEvent | ClosedEvent | QuorumMissedEvent | AbortedEvent | AnnounceEvent
  | { type: 'accepted', round: number, attempt: number, site: string, nonce: string }

export interface CountedUpdate { site: string, nonce: string, samples: number }

/** What `aggregate` hands node/ to commit durably. */
export interface RoundOutcome {
  round: number
  attempt: number
  seed: number
  specHash: string
  strategy: string
  /** Sites whose updates counted, sorted. */
  participants: string[]
  /** Invited sites that did not deliver in time, sorted. */
  dropouts: string[]
  updates: CountedUpdate[]
  next: Float32Array
  state: JsonValue
  bytes: RoundBytes
}

export interface RoundStatus { phase: RoundPhase, round: number, attempt: number, deadline: number | undefined, received: string[], participants: string[] }

export interface RoundMachine {
  open: (participants: readonly string[]) => OpenEvent
  receiveUpdate: (update: UpdateInput) => ReceiveResult
  /** Checks the deadline; returns the events it caused (closing, or a missed quorum and the reopening). */
  tick: (options?: { participants?: readonly string[] }) => RoundEvent[]
  aggregate: (input: { global: Float32Array, strategy: Strategy, state: JsonValue }) => RoundOutcome
  /** Call after the outcome is durably written; announces it and moves to the next round. */
  commit: (input: { aggregateHash: string }) => AnnounceEvent
  /** Drops the current attempt without committing and reopens the round (e.g. a bad aggregate). */
  abort: (reason: string, options?: { participants?: readonly string[] }) => RoundEvent[]
  /** Moves an idle machine forward after catching up on rounds committed elsewhere. */
  advanceTo: (nextRound: number) => void
  status: () => RoundStatus
  subscribe: (listener: (event: RoundEvent) => void) => () => void
}

interface Accepted { update: UpdateInput, key: string }

export function createRoundMachine (input: z.input<typeof RoundConfigSchema>, components: { clock: Clock, random: Random, logger: Logger }): RoundMachine {
  const parsed = RoundConfigSchema.safeParse(input)
  if (!parsed.success) throw new InvalidArgumentError(`invalid round config: ${describeIssues(parsed.error.issues, input).join('; ')}`)
  const config = parsed.data
  const { clock, random, logger } = components
  const listeners = new Set<(e: RoundEvent) => void>()

  let phase: RoundPhase = 'idle'
  let round = config.nextRound
  let attempt = 0
  let participants: string[] = []
  let deadline: number | undefined
  let seed = 0
  let required = 0
  let closedReason: ClosedEvent['reason'] = 'all-in'
  let accepted = new Map<string, Accepted>() // by site
  let keys = new Set<string>()
  let outcome: RoundOutcome | undefined

  const emit = (e: RoundEvent): RoundEvent => {
    logger.debug(e.type, { round: e.round, ...('attempt' in e ? { attempt: e.attempt } : {}) })
    for (const l of listeners) l(e)
    return e
  }
  const contributors = (): string[] => [...accepted.keys()].sort()

  const openAttempt = (list: readonly string[]): OpenEvent => {
    const unique = [...new Set(list)].sort()
    if (unique.length === 0) throw new InvalidArgumentError(`round ${round} needs at least one participant`)
    if (unique.length !== list.length) throw new InvalidArgumentError(`round ${round} lists a participant twice`)
    attempt++
    participants = unique
    deadline = clock.now() + config.roundTimeoutMs
    seed = random.fork(`round/${round}`).int(2 ** 32)
    required = Math.min(unique.length, Math.max(config.minUpdates, Math.ceil(config.quorumFraction * unique.length)))
    accepted = new Map()
    keys = new Set()
    outcome = undefined
    phase = 'collecting'
    return emit({ type: 'open', round, attempt, participants: [...participants], deadline, specHash: config.specHash, seed, required }) as OpenEvent
  }

  const close = (reason: ClosedEvent['reason']): RoundEvent => {
    phase = 'ready'
    closedReason = reason
    const dropouts = participants.filter(p => !accepted.has(p))
    return emit({ type: 'closed', round, attempt, reason, contributors: contributors(), dropouts })
  }

  const reopen = (events: RoundEvent[], list: readonly string[] | undefined): RoundEvent[] => {
    events.push(openAttempt(list ?? participants))
    return events
  }

  /** Closes collection once the deadline has passed; a missed quorum reopens the round. */
  const checkDeadline = (list?: readonly string[]): RoundEvent[] => {
    if (phase !== 'collecting' || deadline === undefined || clock.now() <= deadline) return []
    if (accepted.size >= required) return [close('deadline')]
    const error = new QuorumNotReachedError(`round ${round} attempt ${attempt} closed at its deadline with ${accepted.size} of ${required} required updates; nothing committed, round reopened`)
    logger.warn('quorum-missed', { round, attempt, received: accepted.size, required })
    const events: RoundEvent[] = [emit({ type: 'quorum-missed', round, attempt, received: accepted.size, required, error: { name: error.name, message: error.message } })]
    return reopen(events, list)
  }

  const reject = (reason: RejectReason, message: string): ReceiveResult => {
    logger.debug('update-rejected', { round, reason })
    return { status: 'rejected', reason, message }
  }

  return {
    open: (list) => {
      if (phase !== 'idle') throw new RoundPhaseError(`cannot open round ${round}: round ${round} is ${phase}`)
      return openAttempt(list)
    },

    receiveUpdate: (u) => {
      checkDeadline()
      if (u.round < round) return reject('stale-round', `update for round ${u.round} from '${u.site}' is stale; the current round is ${round}`)
      if (u.round > round) return reject('future-round', `update for round ${u.round} from '${u.site}' is from the future; the current round is ${round}`)
      if (typeof u.nonce !== 'string' || u.nonce.length === 0 || u.nonce.length > 128) return reject('bad-nonce', `update from '${u.site}' needs a nonce of 1..128 characters`)
      const key = `${u.round}\u0000${u.site}\u0000${u.nonce}`
      if (keys.has(key)) return { status: 'duplicate' }
      if (phase === 'idle') return reject('not-collecting', `round ${round} is not open`)
      if (!participants.includes(u.site)) return reject('not-a-participant', `'${u.site}' is not a participant of round ${round}`)
      if (accepted.has(u.site)) return reject('already-submitted', `'${u.site}' already contributed to round ${round} with another nonce`)
      if (phase !== 'collecting') return reject('past-deadline', `round ${round} closed its collection (${closedReason}); '${u.site}' is a dropout`)
      if (u.delta.length !== config.vectorLength) return reject('wrong-length', `update from '${u.site}' has ${u.delta.length} values, expected ${config.vectorLength}`)
      if (!Number.isInteger(u.samples) || u.samples <= 0) return reject('bad-samples', `update from '${u.site}' has samples=${u.samples}`)
      for (let i = 0; i < u.delta.length; i++) {
        if (!Number.isFinite(u.delta[i])) return reject('non-finite', `update from '${u.site}' has a non-finite value at ${i}`)
      }
      keys.add(key)
      accepted.set(u.site, { update: { ...u, delta: u.delta.slice() }, key })
      emit({ type: 'accepted', round, attempt, site: u.site, nonce: u.nonce })
      if (accepted.size === participants.length) close('all-in')
      return { status: 'accepted', received: accepted.size, required }
    },

    tick: (options) => checkDeadline(options?.participants),

    aggregate: ({ global, strategy, state }) => {
      if (phase === 'collecting' && deadline !== undefined && clock.now() > deadline) checkDeadline()
      if (phase !== 'ready') {
        if (phase === 'collecting') throw new RoundPhaseError(`round ${round} is still collecting (${accepted.size} of ${participants.length} updates, deadline ${String(deadline)})`)
        throw new RoundPhaseError(`cannot aggregate round ${round}: it is ${phase}`)
      }
      if (accepted.size < required) throw new QuorumNotReachedError(`round ${round} has ${accepted.size} of ${required} required updates`)
      const sites = contributors()
      const updates = sites.map(s => accepted.get(s)!.update)
      const result = strategy.aggregate(updates.map(u => ({ site: u.site, delta: u.delta, samples: u.samples })), global, state)
      outcome = {
        round,
        attempt,
        seed,
        specHash: config.specHash,
        strategy: strategy.name,
        participants: sites,
        dropouts: participants.filter(p => !accepted.has(p)),
        updates: updates.map(u => ({ site: u.site, nonce: u.nonce, samples: u.samples })),
        next: result.next,
        state: result.state,
        bytes: summarizeRoundBytes(updates.map(u => ({ site: u.site, rawBytes: 4 * u.delta.length, wireBytes: u.wireBytes ?? 4 * u.delta.length })))
      }
      phase = 'aggregated'
      return outcome
    },

    commit: ({ aggregateHash }) => {
      if (phase !== 'aggregated' || outcome === undefined) throw new RoundPhaseError(`cannot commit round ${round}: it is ${phase}, not aggregated`)
      const o = outcome
      const event = emit({ type: 'announce', round: o.round, aggregateHash, participants: o.participants, dropouts: o.dropouts, specHash: o.specHash, seed: o.seed, strategy: o.strategy }) as AnnounceEvent
      logger.info('round-committed', { round: o.round, participants: o.participants.length, dropouts: o.dropouts.length, ratio: o.bytes.ratio })
      round++
      attempt = 0
      phase = 'idle'
      participants = []
      deadline = undefined
      accepted = new Map()
      keys = new Set()
      outcome = undefined
      return event
    },

    abort: (reason, options) => {
      if (phase === 'idle') throw new RoundPhaseError(`cannot abort round ${round}: it is not open`)
      const events: RoundEvent[] = [emit({ type: 'aborted', round, attempt, reason })]
      return reopen(events, options?.participants)
    },

    advanceTo: (nextRound) => {
      if (phase !== 'idle') throw new RoundPhaseError(`cannot advance to round ${nextRound}: round ${round} is ${phase}`)
      if (!Number.isInteger(nextRound) || nextRound < round) throw new InvalidArgumentError(`cannot move from round ${round} back to ${nextRound}`)
      round = nextRound
    },

    status: () => ({ phase, round, attempt, deadline, received: contributors(), participants: [...participants] }),

    subscribe: (listener) => {
      listeners.add(listener)
      return () => { listeners.delete(listener) }
    }
  }
}
