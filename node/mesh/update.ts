/**
 * The update protocol's two ends. Sending encodes the tensors (or takes a
 * pre-encoded body) and waits for the aggregator's ack. Receiving checks the
 * body against its hash, decodes it and hands it to the rounds layer's
 * callback; the callback decides, this file only moves bytes.
 *
 * Each byte is touched as few times as the checks allow: f32 tensors go to
 * the stream straight from the caller's arrays (hashed once, never copied
 * into a body), and the receiver hashes the body while it arrives, then
 * decodes f32 tensors as views of the received frame.
 */
import type { Logger } from '../../coordinator/components.ts'
import { TensorChecksumError, TensorCodecError } from '../../protocols/errors.ts'
import type { TensorMap } from '../../protocols/tensors.ts'
import { BODY_HASH_FROM } from '../../protocols/tensor-codec/constants.ts'
import { decodeTensors, encodeTensorParts, tensorBodyHash } from '../../protocols/tensor-codec/tensor-codec.ts'
import { UPDATE_MAX_FRAME_BYTES, UPDATE_PROTOCOL, UPDATE_TIMEOUT_MS } from '../../protocols/update/constants.ts'
import { UpdateAck, UpdateRequest } from '../../protocols/update/update.ts'
import type { SiteHost } from './host.ts'

export type UpdateHeader = UpdateRequest
export type UpdateVerdict = { accepted: boolean, reason?: string }

export interface ReceivedUpdate {
  peerId: string
  header: UpdateHeader
  tensors: TensorMap
}

export type UpdateCallback = (update: ReceivedUpdate, signal: AbortSignal) => Promise<UpdateVerdict> | UpdateVerdict

export interface OutgoingUpdate extends Omit<UpdateHeader, 'kind' | 'bodyHash'> {
  /**
   * The tensors, encoded with `dtype`; or `body`, already encoded. With f32
   * the tensors' arrays are sent in place: do not change them until send()
   * settles (a change would fail the receiver's hash check).
   */
  tensors?: TensorMap
  body?: Uint8Array
  blockSize?: number
}

export interface UpdateServiceInit {
  maxFrameBytes?: number
  timeoutMs?: number
}

export interface UpdateService {
  start: () => Promise<void>
  /** Registers the receiver (one at a time; a later call replaces it). */
  onUpdate: (callback: UpdateCallback) => void
  send: (peerId: string, update: OutgoingUpdate, options?: { signal?: AbortSignal, timeoutMs?: number }) => Promise<UpdateAck>
}

/**
 * Decodes an update body after checking it is the body the header names.
 * `digest`: the body's sha256 from BODY_HASH_FROM on, computed by this site
 * while receiving it (the frame's bodyDigest); without it the body is hashed here.
 */
export function decodeUpdateBody (header: UpdateHeader, body: Uint8Array | undefined, maxBytes: number, digest?: Uint8Array): TensorMap {
  if (body === undefined) throw new TensorCodecError(`update for round ${header.round} has no body`)
  const carried = tensorBodyHash(body)
  if (carried !== header.bodyHash) throw new TensorChecksumError(`update for round ${header.round} names body ${header.bodyHash} but carries ${carried}`)
  // The frame's bytes belong to this update alone: f32 tensors can stay in place.
  return decodeTensors(body, digest === undefined ? { maxBytes, copy: false } : { maxBytes, copy: false, digest })
}

export function createUpdateService (init: UpdateServiceInit, components: { host: SiteHost, logger: Logger }): UpdateService {
  const { host, logger: log } = components
  const maxFrameBytes = init.maxFrameBytes ?? UPDATE_MAX_FRAME_BYTES
  const timeoutMs = init.timeoutMs ?? UPDATE_TIMEOUT_MS
  let callback: UpdateCallback | undefined
  let started = false

  return {
    start: async () => {
      if (started) return
      started = true
      await host.handle(UPDATE_PROTOCOL, async (frame, ctx) => {
        const header = frame.header
        const tensors = decodeUpdateBody(header, frame.body, maxFrameBytes, frame.bodyDigest)
        const verdict = callback === undefined
          ? { accepted: false, reason: 'this site takes no updates' }
          : await callback({ peerId: ctx.peerId, header, tensors }, ctx.signal)
        log.debug('update.received', { peer: ctx.peerId, round: header.round, site: header.site, bytes: frame.body?.byteLength, accepted: verdict.accepted })
        const ack: UpdateAck = { kind: 'ack', round: header.round, accepted: verdict.accepted }
        if (verdict.reason !== undefined) ack.reason = verdict.reason.slice(0, 1024)
        return { header: ack }
      }, { maxFrameBytes, schema: UpdateRequest, timeoutMs, bodyDigestFrom: BODY_HASH_FROM })
    },
    onUpdate: (cb) => { callback = cb },
    send: async (peerId, update, options = {}) => {
      const { tensors, body: given, blockSize, ...rest } = update
      const encoded = given === undefined
        ? encodeTensorParts(tensors ?? new Map(), blockSize === undefined ? { dtype: update.dtype } : { dtype: update.dtype, blockSize })
        : { parts: [given], hash: tensorBodyHash(given) }
      const header: UpdateHeader = { kind: 'update', ...rest, bodyHash: encoded.hash }
      const body = encoded.parts
      const response = await host.request(peerId, UPDATE_PROTOCOL, { header, body }, {
        schema: UpdateAck, timeoutMs: options.timeoutMs ?? timeoutMs, signal: options.signal
      })
      return response.header
    }
  }
}
