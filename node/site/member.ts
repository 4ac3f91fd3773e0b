/**
 * The member role, which every site plays (the coordinator too): train H
 * local steps from the last committed shared parameters, take the
 * pseudo-gradient delta = start - now, clip and noise it through the privacy
 * ledger (checked and charged before anything leaves), compress it, and send
 * it to the elected coordinator until it is acknowledged.
 *
 * An update is prepared once per round and its nonce is `<round>:<site>`, so
 * sending it again (a new coordinator, a restart) is acknowledged as a
 * duplicate and never counted twice. The top-k residual (error feedback) is
 * kept in the store, so a restarted site compresses a round exactly as it
 * did before the crash.
 */
import { z } from 'zod'
import type { Clock, Logger } from '../../coordinator/components.ts'
import type { Compressor } from '../../coordinator/compression/combined.ts'
import { encodeTensors } from '../../protocols/tensor-codec/tensor-codec.ts'
import { flattenTensors, unflattenTensors, type TensorMap } from '../../protocols/tensors.ts'
import { PrivacyBudgetExceededError } from '../errors.ts'
import type { UpdateService } from '../mesh/update.ts'
import type { SiteMetrics } from '../metrics.ts'
import type { LedgerEntry } from '../privacy/ledger.ts'
import type { PrivateUpdates } from '../privacy/updates.ts'
import type { SiteStore } from '../store.ts'
import { encodeUpdate, payloadBytes, type UpdateMeta } from './bundle.ts'
import type { CommitPath } from './commits.ts'
import type { CoordinatorRole, Verdict } from './coordinator.ts'
import type { Learner } from './learner.ts'
import type { Leader } from './presence.ts'

export type StepResult =
  /** The coordinator holds our update; wait for the commit. */
  | 'acked'
  /** The coordinator was not ready (no round open yet, or a future round): try again soon. */
  | 'retry'
  /** Too late for this round (a dropout, or not invited): wait for its commit. */
  | 'later'
  /** The coordinator is ahead of us: catch up. */
  | 'stale'
  /** The round was committed while we trained. */
  | 'superseded'
  /** The privacy budget is spent: this site sends no more updates. */
  | 'privacy-refused'

export interface SentUpdate { round: number, coordinator: string, rawBytes: number, wireBytes: number, status: 'accepted' | 'duplicate' }

export interface MemberRoleInit {
  site: string
  selfPeerId: string
  localSteps: number
  template: TensorMap
  updateTimeoutMs: number
}

export interface MemberRoleComponents {
  clock: Clock
  logger: Logger
  learner: Learner
  commits: CommitPath
  updates: UpdateService
  coordinator: CoordinatorRole
  store: SiteStore
  metrics: SiteMetrics
  privacy?: PrivateUpdates
  compressor?: Compressor
  onCharged: (round: number, entry: LedgerEntry) => Promise<void> | void
  onRefused: (round: number, error: PrivacyBudgetExceededError) => Promise<void> | void
  onSent: (sent: SentUpdate) => void
}

interface Prepared {
  round: number
  baseHash: string
  nonce: string
  meta: UpdateMeta
  body: Uint8Array
  /** Exactly what the coordinator decodes from `body`. */
  delta: Float32Array
  samples: number
  rawBytes: number
  startedAt: number
}

export interface MemberRole {
  step: (round: number, leader: Leader, options?: { signal?: AbortSignal }) => Promise<StepResult>
  /** Under secure aggregation: this round's (clipped, noised, charged) update, for the secagg client to mask. */
  input: (round: number, signal?: AbortSignal) => Promise<{ delta: Float32Array, samples: number } | undefined>
  /** The budget is spent (this site sends nothing more). */
  refused: () => boolean
}

const RESIDUAL_KEY = 'site/residual'
const ResidualRecord = z.object({ round: z.number().int().positive(), before: z.string(), after: z.string() }).strict()
const b64 = (v: Float32Array): string => Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64')
const unb64 = (s: string): Float32Array => {
  const bytes = Buffer.from(s, 'base64')
  const out = new Float32Array(bytes.byteLength / 4)
  new Uint8Array(out.buffer).set(bytes)
  return out
}

export function createMemberRole (init: MemberRoleInit, components: MemberRoleComponents): MemberRole {
  const { clock, learner, commits, store, compressor, privacy } = components
  const log = components.logger
  const names = [...init.template.keys()]
  const vectorLength = flattenTensors(init.template).length
  let prepared: Prepared | undefined
  let acked: { round: number, peerId: string, term: number } | undefined
  let refused = false

  /** Compresses with the residual this round started from, and keeps both residuals on disk. */
  const compress = async (round: number, c: Compressor, flat: Float32Array): Promise<{ bytes: Uint8Array, decoded: Float32Array }> => {
    const saved = await store.getJson('checkpoints', RESIDUAL_KEY, ResidualRecord)
    if (saved !== undefined && saved.round <= round) c.setResidual(unb64(saved.round === round ? saved.before : saved.after))
    const before = c.residual()
    const out = c.compress(flat)
    await store.putJson('checkpoints', RESIDUAL_KEY, { round, before: b64(before), after: b64(c.residual()) })
    return out
  }

  const prepare = async (round: number, signal?: AbortSignal): Promise<Prepared | undefined> => {
    const startedAt = clock.now()
    const global = await commits.global()
    const baseHash = commits.globalHash()
    const release = commits.holdLearner()
    let now: Float32Array
    let seen: number
    try {
      learner.setShared(unflattenTensors(global, init.template))
      seen = (await learner.trainLocal(init.localSteps, { signal })).samples
      now = flattenTensors(learner.getShared(), names)
    } finally {
      await release()
    }
    const seconds = (clock.now() - startedAt) / 1000
    if (seconds > 0) components.metrics.trainingSamplesPerSecond.set(seen / seconds)
    if (commits.lastRound() >= round) return undefined
    let tensors = unflattenTensors(Float32Array.from(global, (g, i) => g - now[i]!), init.template)
    if (privacy !== undefined) {
      const { sent, entry } = await privacy.release(round, tensors, async (t) => t, { signal })
      tensors = sent
      if (entry !== undefined) await components.onCharged(round, entry)
    }
    let flat = flattenTensors(tensors, names)
    const nonce = `${round}:${init.site}`
    let encoded = encodeUpdate(nonce, tensors)
    if (compressor !== undefined && compressor.config.kind !== 'none') {
      const { bytes, decoded } = await compress(round, compressor, flat)
      encoded = encodeUpdate(nonce, tensors, { kind: compressor.config.kind, bytes })
      // Our own delivery counts exactly what the coordinator would decode from the bytes.
      flat = decoded
    }
    const body = encodeTensors(encoded.tensors, { dtype: 'f32' })
    return { round, baseHash, nonce, meta: encoded.meta, body, delta: flat, samples: learner.sampleCount, rawBytes: 4 * vectorLength, startedAt }
  }

  const send = async (p: Prepared, leader: Leader, signal?: AbortSignal): Promise<Verdict> => {
    if (leader.peerId === init.selfPeerId) {
      return components.coordinator.receive({ peerId: init.selfPeerId, baseHash: p.baseHash, round: p.round, site: init.site, nonce: p.nonce, delta: p.delta, samples: p.samples, wireBytes: payloadBytes(p.meta, vectorLength) })
    }
    const ack = await components.updates.send(leader.peerId, {
      round: p.round, site: init.site, baseHash: p.baseHash, dtype: 'f32', numSamples: p.samples, meta: p.meta, body: p.body
    }, { ...(signal !== undefined ? { signal } : {}), timeoutMs: init.updateTimeoutMs })
    return ack.reason === undefined ? { accepted: ack.accepted } : { accepted: ack.accepted, reason: ack.reason }
  }

  /** The round's update, prepared once; undefined when the round was committed meanwhile. */
  const preparedFor = async (round: number, signal?: AbortSignal): Promise<Prepared | undefined> => {
    if (prepared?.round === round) return prepared
    prepared = undefined
    try {
      prepared = await prepare(round, signal)
    } catch (err) {
      if (!(err instanceof PrivacyBudgetExceededError)) throw err
      refused = true
      log.warn('update.refused', { round, error: err.message })
      await components.onRefused(round, err)
      throw err
    }
    return prepared
  }

  return {
    refused: () => refused,
    input: async (round, signal) => {
      const p = await preparedFor(round, signal)
      return p === undefined ? undefined : { delta: p.delta, samples: p.samples }
    },
    step: async (round, leader, options = {}) => {
      if (refused) return 'privacy-refused'
      if (acked?.round === round && acked.peerId === leader.peerId && acked.term === leader.term) return 'acked'
      try {
        if (await preparedFor(round, options.signal) === undefined) return 'superseded'
      } catch (err) {
        if (err instanceof PrivacyBudgetExceededError) return 'privacy-refused'
        throw err
      }
      if (prepared === undefined) return 'superseded'
      let verdict: Verdict
      try {
        verdict = await send(prepared, leader, options.signal)
      } catch (err) {
        if (options.signal?.aborted === true) throw err
        log.debug('update.send.failed', { round, coordinator: leader.site, error: (err as Error).message })
        return 'retry'
      }
      if (verdict.accepted) {
        acked = { round, peerId: leader.peerId, term: leader.term }
        components.metrics.updateLatency.observe((clock.now() - prepared.startedAt) / 1000)
        components.onSent({ round, coordinator: leader.site, rawBytes: prepared.rawBytes, wireBytes: payloadBytes(prepared.meta, vectorLength), status: verdict.reason === 'duplicate' ? 'duplicate' : 'accepted' })
        return 'acked'
      }
      const reason = verdict.reason ?? ''
      log.debug('update.not-taken', { round, coordinator: leader.site, reason })
      if (reason.startsWith('stale-round') || reason.startsWith('base-mismatch')) return 'stale'
      if (reason.startsWith('not-a-participant') || reason.startsWith('past-deadline')) return 'later'
      return 'retry'
    }
  }
}
