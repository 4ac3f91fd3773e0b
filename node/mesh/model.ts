/**
 * The model protocol's two ends: the coordinator announces a committed
 * aggregate to members, and a member fetches a committed round it missed.
 * Which rounds exist, and what a commit means, belong to the rounds layer:
 * it plugs in `onAnnounce` and `provideCommits`.
 */
import type { Logger } from '../../coordinator/components.ts'
import { FrameHeaderError, TensorChecksumError } from '../../protocols/errors.ts'
import { MODEL_MAX_FRAME_BYTES, MODEL_PROTOCOL, MODEL_TIMEOUT_MS } from '../../protocols/model/constants.ts'
import { type CommitInfo, ModelRequest, ModelResponse } from '../../protocols/model/model.ts'
import type { TensorMap } from '../../protocols/tensors.ts'
import { decodeTensors, tensorBodyHash } from '../../protocols/tensor-codec/tensor-codec.ts'
import type { SiteHost } from './host.ts'

export type { CommitInfo }

export interface StoredCommit {
  info: CommitInfo
  /** The codec body, when it fits a frame; otherwise peers fetch blob `info.hash`. */
  body?: Uint8Array
}

export type AnnounceCallback = (commit: { peerId: string, info: CommitInfo, tensors?: TensorMap }, signal: AbortSignal) => Promise<{ accepted: boolean, reason?: string }> | { accepted: boolean, reason?: string }
export type CommitProvider = (round: number | 'latest', signal: AbortSignal) => Promise<StoredCommit | undefined> | StoredCommit | undefined

export interface ModelService {
  start: () => Promise<void>
  onAnnounce: (callback: AnnounceCallback) => void
  provideCommits: (provider: CommitProvider) => void
  announce: (peerId: string, commit: StoredCommit, options?: { signal?: AbortSignal }) => Promise<{ accepted: boolean, reason?: string }>
  /** The commit of `round`, decoded when inline; undefined when the peer lacks it. */
  fetchRound: (peerId: string, round: number | 'latest', options?: { signal?: AbortSignal }) => Promise<{ info: CommitInfo, tensors?: TensorMap, latest?: number } | undefined>
}

function decodeCommitBody (info: CommitInfo, body: Uint8Array, maxBytes: number): TensorMap {
  const carried = tensorBodyHash(body)
  if (carried !== info.hash) throw new TensorChecksumError(`commit of round ${info.round} names body ${info.hash} but carries ${carried}`)
  return decodeTensors(body, { maxBytes })
}

export function createModelService (init: { maxFrameBytes?: number, timeoutMs?: number }, components: { host: SiteHost, logger: Logger }): ModelService {
  const { host, logger: log } = components
  const maxFrameBytes = init.maxFrameBytes ?? MODEL_MAX_FRAME_BYTES
  const timeoutMs = init.timeoutMs ?? MODEL_TIMEOUT_MS
  let onAnnounce: AnnounceCallback | undefined
  let provider: CommitProvider | undefined
  let started = false

  const infoOf = (h: CommitInfo): CommitInfo => {
    const info: CommitInfo = { round: h.round, hash: h.hash, bytes: h.bytes, dtype: h.dtype }
    if (h.parentHash !== undefined) info.parentHash = h.parentHash
    if (h.meta !== undefined) info.meta = h.meta
    return info
  }

  return {
    start: async () => {
      if (started) return
      started = true
      await host.handle(MODEL_PROTOCOL, async (frame, ctx) => {
        const req = frame.header
        if (req.kind === 'announce') {
          const { kind: _k, inline, ...rest } = req
          const info = infoOf(rest)
          const tensors = inline ? decodeCommitBody(info, frame.body ?? new Uint8Array(0), maxFrameBytes) : undefined
          const verdict = onAnnounce === undefined ? { accepted: false, reason: 'this site takes no commits' } : await onAnnounce({ peerId: ctx.peerId, info, ...(tensors !== undefined ? { tensors } : {}) }, ctx.signal)
          log.debug('model.announce.received', { peer: ctx.peerId, round: info.round, accepted: verdict.accepted })
          return { header: { kind: 'ack', round: info.round, accepted: verdict.accepted, ...(verdict.reason !== undefined ? { reason: verdict.reason.slice(0, 1024) } : {}) } }
        }
        const commit = provider === undefined ? undefined : await provider(req.round, ctx.signal)
        if (commit === undefined) return { header: { kind: 'missing', round: req.round } }
        const inline = commit.body !== undefined && commit.body.byteLength < maxFrameBytes - 64 * 1024
        return { header: { kind: 'aggregate', ...commit.info, inline }, ...(inline ? { body: commit.body } : {}) }
      }, { maxFrameBytes, schema: ModelRequest, timeoutMs })
    },
    onAnnounce: (cb) => { onAnnounce = cb },
    provideCommits: (p) => { provider = p },
    announce: async (peerId, commit, options = {}) => {
      const inline = commit.body !== undefined
      const response = await host.request(peerId, MODEL_PROTOCOL, { header: { kind: 'announce', ...commit.info, inline }, ...(inline ? { body: commit.body } : {}) }, {
        schema: ModelResponse, timeoutMs, signal: options.signal
      })
      const h = response.header
      if (h.kind !== 'ack') return { accepted: false, reason: `unexpected answer '${h.kind}'` }
      return h.reason === undefined ? { accepted: h.accepted } : { accepted: h.accepted, reason: h.reason }
    },
    fetchRound: async (peerId, round, options = {}) => {
      const response = await host.request(peerId, MODEL_PROTOCOL, { header: { kind: 'get', round } }, {
        schema: ModelResponse, timeoutMs, maxFrameBytes, signal: options.signal
      })
      const h = response.header
      if (h.kind === 'missing') return undefined
      if (h.kind !== 'aggregate') throw new FrameHeaderError(`peer ${peerId} answered a fetch with '${h.kind}'`)
      const { kind: _k, inline, ...rest } = h
      const info = infoOf(rest)
      if (!inline) return { info }
      return { info, tensors: decodeCommitBody(info, response.body ?? new Uint8Array(0), maxFrameBytes) }
    }
  }
}
