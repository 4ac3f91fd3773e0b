/**
 * The one path by which committed rounds enter a site: its own commit as
 * coordinator, an announcement from the coordinator, or catch-up from a peer.
 * Commits run one at a time (a promise chain), each is verified against the
 * round log's chain and hashes before it is written in one batch, and each is
 * applied to the learner and reported once.
 */
import type { Logger } from '../../coordinator/components.ts'
import type { JsonValue } from '../../coordinator/strategies/types.ts'
import { ForgemeshError } from '../../protocols/errors.ts'
import type { CommitInfo } from '../../protocols/model/model.ts'
import { unflattenTensors, type TensorMap } from '../../protocols/tensors.ts'
import { CatchUpError } from '../errors.ts'
import type { ModelService, StoredCommit } from '../mesh/model.ts'
import { aggregateToBytes, bytesToAggregate, CommittedRoundSchema, recordHash, type CommittedRound, type RoundLog } from '../round-log.ts'
import { sha256Hex } from '../store.ts'
import { decodeCommitBundle, encodeCommitBundle, type CommitBundle, type CommitFacts } from './bundle.ts'
import type { Learner } from './learner.ts'

export type CommitVia = 'coordinator' | 'announce' | 'catch-up'

export interface Committed { record: CommittedRound, facts: CommitFacts, via: CommitVia, from?: string }

export interface CommitPathInit {
  /** Names and shapes of the shared parameters, in flattening order. */
  template: TensorMap
  /** The shared parameters before round 1. */
  initial: Float32Array
}

export interface CommitPathComponents {
  log: RoundLog
  learner: Learner
  model: ModelService
  logger: Logger
  onCommitted: (c: Committed) => Promise<void> | void
}

export interface CommitPath {
  /** Reads the log and puts its last aggregate into the learner (resume after a restart). */
  load: () => Promise<void>
  lastRound: () => number
  /** The committed global vector (the initial parameters before round 1). */
  global: () => Promise<Float32Array>
  /** sha256 of the committed global vector's float32 bytes: the base every update names. */
  globalHash: () => string
  /** The coordinator's own commit, after its announcement. */
  commitOwn: (bundle: CommitBundle) => Promise<'committed' | 'exists'>
  /** A commit announced by a peer: verified, written, applied. */
  accept: (peerId: string, info: CommitInfo, tensors: TensorMap | undefined, signal?: AbortSignal) => Promise<{ accepted: boolean, reason?: string }>
  /** Fetches and commits the rounds after the last one from the first peers that have them. */
  catchUp: (peers: readonly string[], options?: { signal?: AbortSignal }) => Promise<number>
  /** A committed round as this site serves it to a peer. */
  provide: (round: number | 'latest') => Promise<StoredCommit | undefined>
  /** Keeps commits from touching the learner while it trains; the release puts the last commit back. */
  holdLearner: () => () => Promise<void>
}

export function createCommitPath (init: CommitPathInit, components: CommitPathComponents): CommitPath {
  const { log: roundLog, learner, model } = components
  const log = components.logger
  const initialHash = sha256Hex(aggregateToBytes(init.initial))
  let last = 0
  let lastAggregateHash = initialHash
  let chain: Promise<unknown> = Promise.resolve()
  let holds = 0

  const locked = async <T>(fn: () => Promise<T>): Promise<T> => {
    const run = chain.then(fn, fn)
    chain = run.catch(() => {})
    return await run
  }

  const apply = (aggregateBytes: Uint8Array): void => {
    if (holds > 0) return
    learner.setShared(unflattenTensors(bytesToAggregate(aggregateBytes), init.template))
  }

  const global = async (): Promise<Float32Array> => last === 0 ? init.initial.slice() : (await roundLog.aggregate(last))!

  /** Writes a verified round and reports it; the caller holds the lock. */
  const write = async (record: CommittedRound, aggregateBytes: Uint8Array, strategyState: JsonValue, facts: CommitFacts, via: CommitVia, from?: string): Promise<'committed' | 'exists'> => {
    const result = await roundLog.commit(record, { strategyState, aggregateBytes })
    if (result === 'exists') return result
    last = record.round
    lastAggregateHash = record.aggregateHash
    apply(aggregateBytes)
    log.info('round.committed', { round: record.round, via, participants: record.participants.length, aggregate: record.aggregateHash.slice(0, 12), ...(from !== undefined ? { from } : {}) })
    await components.onCommitted({ record, facts, via, ...(from !== undefined ? { from } : {}) })
    return result
  }

  const catchUpFrom = async (peerId: string, signal?: AbortSignal, upTo = Infinity): Promise<number> => {
    let count = 0
    while (last + 1 <= upTo) {
      signal?.throwIfAborted()
      const next = last + 1
      const fetched = await model.fetchRound(peerId, next, { signal })
      if (fetched === undefined) break
      if (fetched.tensors === undefined) throw new CatchUpError(`round ${next} at ${peerId} is too large for one frame; chunked catch-up is not supported yet`)
      const parts = decodeCommitBundle(fetched.info, fetched.tensors)
      const record = await roundLog.verifyFetched(parts.record, parts.aggregateBytes, parts.strategyState)
      await write(record, parts.aggregateBytes, parts.strategyState as JsonValue, parts.facts, 'catch-up', peerId)
      count++
    }
    return count
  }

  return {
    load: async () => {
      const record = await roundLog.last()
      last = record?.round ?? 0
      lastAggregateHash = record?.aggregateHash ?? initialHash
      learner.setShared(unflattenTensors(await global(), init.template))
    },
    lastRound: () => last,
    global,
    globalHash: () => lastAggregateHash,
    commitOwn: async (b) => await locked(async () => await write(b.record, b.aggregateBytes, b.strategyState, b.facts, 'coordinator')),
    accept: async (peerId, info, tensors, signal) => await locked(async () => {
      if (tensors === undefined) return { accepted: false, reason: 'too-large: announce the commit inline' }
      const parts = decodeCommitBundle(info, tensors)
      const round = info.round
      if (round <= last) {
        const mine = await roundLog.get(round)
        const theirs = CommittedRoundSchema.safeParse(parts.record)
        if (mine !== undefined && theirs.success && recordHash(mine) === recordHash(theirs.data)) return { accepted: true, reason: 'exists' }
        return { accepted: false, reason: `conflict: round ${round} is committed here with aggregate ${mine?.aggregateHash ?? 'unknown'}` }
      }
      // A gap: the rounds in between come from the announcer, verified one by one.
      if (round > last + 1) await catchUpFrom(peerId, signal, round - 1)
      if (round !== last + 1) return { accepted: false, reason: `gap: this site holds round ${last}, cannot take round ${round}` }
      try {
        const record = await roundLog.verifyFetched(parts.record, parts.aggregateBytes, parts.strategyState)
        await write(record, parts.aggregateBytes, parts.strategyState as JsonValue, parts.facts, 'announce', peerId)
        return { accepted: true }
      } catch (err) {
        if (!(err instanceof ForgemeshError)) throw err
        log.warn('commit.refused', { round, peer: peerId, error: err.name, message: err.message })
        return { accepted: false, reason: `${err.name}: ${err.message}` }
      }
    }),
    catchUp: async (peers, options = {}) => await locked(async () => {
      let total = 0
      for (const peerId of peers) {
        try {
          total += await catchUpFrom(peerId, options.signal)
        } catch (err) {
          if (options.signal?.aborted === true) throw err
          log.warn('catch-up.failed', { peer: peerId, error: (err as Error).name, message: (err as Error).message })
        }
      }
      if (total > 0) log.info('caught-up', { rounds: total, last })
      return total
    }),
    provide: async (round) => {
      const r = round === 'latest' ? last : round
      if (r === 0) return undefined
      const served = await roundLog.serve(r)
      if (served === undefined) return undefined
      return encodeCommitBundle({ record: served.record as CommittedRound, aggregateBytes: served.aggregateBytes, strategyState: served.strategyState as JsonValue, facts: {} })
    },
    holdLearner: () => {
      holds++
      let released = false
      return async () => {
        if (released) return
        released = true
        holds--
        if (holds === 0) learner.setShared(unflattenTensors(await global(), init.template))
      }
    }
  }
}
