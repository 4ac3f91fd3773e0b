/**
 * The update protocol's two ends. Sending encodes the tensors (or takes a
 * pre-encoded body) and waits for the aggregator's ack. Receiving checks the
 * body against its hash, decodes it and hands it to the rounds layer's
 * callback; the callback decides, this file only moves bytes.
 *
 * Each byte is touched as few times as the checks allow. On 1.1.0 the sender
 * hashes each slice of the body just before writing it and sends the digest
 * after the body (the first byte leaves at once, hashing overlaps the wire);
 * f32 tensors go out straight from the caller's arrays. The receiver hashes
 * the body while it arrives, compares with the trailing digest before it
 * decodes, then decodes f32 tensors as views of the received frame.
 * Large frames are assembled in receive buffers from a small pool
 * (body-pool.ts): a consumer that is done with an update calls
 * `release()` and the next update lands in memory that is already mapped.
 * 1.0.0 (hash in the header, computed before sending) is still served, and
 * spoken to a peer that does not speak 1.1.0.
 */
import { createHash } from 'node:crypto'
import type { Clock, Logger } from '../../coordinator/components.ts'
import { FrameDecodeError, TensorChecksumError, TensorCodecError } from '../../protocols/errors.ts'
import type { TensorMap } from '../../protocols/tensors.ts'
import { BODY_HASH_FROM, HASH_BYTES, HASH_OFFSET, MANIFEST_OFFSET } from '../../protocols/tensor-codec/constants.ts'
import { decodeTensors, encodeTensorParts, encodeTensorPartsUnhashed, tensorBodyHash } from '../../protocols/tensor-codec/tensor-codec.ts'
import {
  UPDATE_MAX_FRAME_BYTES, UPDATE_PROTOCOL, UPDATE_PROTOCOL_1_0, UPDATE_SLICE_BYTES, UPDATE_SMALL_FRAME_BYTES, UPDATE_TIMEOUT_MS
} from '../../protocols/update/constants.ts'
import { UpdateAck, UpdateDigest, UpdateFrame, UpdateRequest } from '../../protocols/update/update.ts'
import { BodyReleasedError, MeshRequestTimeoutError, MeshStreamError } from '../errors.ts'
import { createBodyPool, type BodyPool, type BodyPoolInit } from './body-pool.ts'
import { sharedHashWorker, type HashJob } from './hash-worker.ts'
import type { FrameStream } from './frame-stream.ts'
import type { FrameContext, SiteHost } from './host.ts'

export type UpdateHeader = UpdateRequest
export type UpdateVerdict = { accepted: boolean, reason?: string }

export interface ReceivedUpdate {
  peerId: string
  /** bodyHash is the verified body hash, whichever version carried it. */
  header: UpdateHeader
  tensors: TensorMap
  /**
   * Hands the update's receive buffer back for the next update, once the
   * consumer is done with `tensors` (f32 tensors are views of that buffer:
   * copy what must outlive the call, e.g. flattenTensors, before releasing).
   * Optional: an update never released is garbage-collected as before.
   * A second call throws BodyReleasedError.
   */
  release: () => void
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
  /** The receive-buffer pool's bounds (default: 2 idle buffers, dropped after 60 s idle). */
  pool?: BodyPoolInit
  /**
   * Bodies of at least this many bytes are hashed on a worker thread while
   * they are sent and while they arrive (hash-worker.ts; the receiver's
   * copy into the ring is from the assembled frame, still hot); smaller
   * ones, or all when false, on the event loop. Default HASH_WORKER_MIN_BYTES.
   */
  hashWorkerMinBytes?: number | false
}

/**
 * Below this a body is hashed inline. Measured: the worker saves the event
 * loop ≈ 0.3 ms per MiB (it still copies each MiB into the ring, ≈ 0.2 ms,
 * where hashing costs ≈ 0.55) and adds ≈ 0.05–0.1 ms of round trip; at
 * 4 MiB the event loop pays 0.76 ms instead of 2.24.
 */
export const HASH_WORKER_MIN_BYTES = 4 * 1024 * 1024

export interface UpdateServiceComponents {
  host: SiteHost
  logger: Logger
  /** Ages idle receive buffers; default the system clock. */
  clock?: Clock
}

export interface UpdateService {
  start: () => Promise<void>
  /** Registers the receiver (one at a time; a later call replaces it). */
  onUpdate: (callback: UpdateCallback) => void
  send: (peerId: string, update: OutgoingUpdate, options?: { signal?: AbortSignal, timeoutMs?: number }) => Promise<UpdateAck>
  /** The receive buffers (for tests and logs). */
  readonly pool: BodyPool
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

/**
 * Decodes a 1.1.0 body whose sha256 came after it. `digest` is what this
 * site hashed on arrival; the trailer must match it, and only then is the
 * body's zero hash field filled in (the body is ours) and the body decoded.
 */
export function decodeTrailedUpdateBody (header: UpdateFrame, body: Uint8Array | undefined, trailer: UpdateDigest, maxBytes: number, digest?: Uint8Array): { header: UpdateHeader, tensors: TensorMap } {
  if (body === undefined) throw new TensorCodecError(`update for round ${header.round} has no body`)
  if (body.byteLength < MANIFEST_OFFSET) throw new TensorCodecError(`update body of ${body.byteLength} bytes is shorter than its ${MANIFEST_OFFSET}-byte preamble`)
  const actual = Buffer.from(digest ?? createHash('sha256').update(body.subarray(BODY_HASH_FROM)).digest())
  if (actual.byteLength !== HASH_BYTES) throw new TensorCodecError(`a body digest is ${HASH_BYTES} bytes, got ${actual.byteLength}`)
  const hex = actual.toString('hex')
  if (hex !== trailer.bodyHash) throw new TensorChecksumError(`update for round ${header.round} is followed by digest ${trailer.bodyHash} but its body hashes to ${hex}`)
  body.set(actual, HASH_OFFSET)
  const full: UpdateHeader = { ...header, bodyHash: hex }
  return { header: full, tensors: decodeTensors(body, { maxBytes, copy: false, digest: actual }) }
}

/** Subarrays of at most `size` bytes, in order (no copies). */
function slices (parts: readonly Uint8Array[], size: number): Uint8Array[] {
  const out: Uint8Array[] = []
  for (const p of parts) for (let off = 0; off < p.byteLength; off += size) out.push(p.subarray(off, off + size))
  return out
}

const isUnsupported = (err: unknown): boolean =>
  err instanceof MeshStreamError && (err.cause as Error | undefined)?.name === 'UnsupportedProtocolError'

/** release() for an update whose body may lie in a buffer lent by `pool`. */
function releaser (pool: BodyPool, body: Uint8Array | undefined, round: number): () => void {
  let released = false
  return () => {
    if (released) throw new BodyReleasedError(`the update for round ${round} was released twice`)
    released = true
    giveBack(pool, body)
  }
}

/** Hands a body's buffer back if the pool lent it (a small body was never the pool's). */
function giveBack (pool: BodyPool, body: Uint8Array | undefined): void {
  if (body !== undefined && pool.lent(body)) pool.give(body)
}

export function createUpdateService (init: UpdateServiceInit, components: UpdateServiceComponents): UpdateService {
  const { host, logger: log } = components
  const pool = createBodyPool(init.pool, components.clock === undefined ? {} : { clock: components.clock })
  const workerMin = init.hashWorkerMinBytes ?? HASH_WORKER_MIN_BYTES
  const maxFrameBytes = init.maxFrameBytes ?? UPDATE_MAX_FRAME_BYTES
  const timeoutMs = init.timeoutMs ?? UPDATE_TIMEOUT_MS
  /** Peers found not to speak 1.1.0: sent 1.0.0 from then on. */
  const legacyPeers = new Set<string>()
  let forgetOnDisconnect: (() => void) | undefined
  /** A peer found not to speak 1.1.0; forgotten when it disconnects, for it may come back upgraded. */
  const markLegacy = (peerId: string): void => {
    legacyPeers.add(peerId)
    forgetOnDisconnect ??= host.on('peer:disconnect', (e) => { legacyPeers.delete(e.peerId) })
  }
  let callback: UpdateCallback | undefined
  let started = false

  /**
   * Who hashes a body, sent or received: the process's worker thread for a large one while it is
   * free (undefined: this thread). The thread starts on the first large body and never keeps the process alive.
   */
  const workerJob = (bytes: number): HashJob | undefined =>
    workerMin !== false && bytes >= workerMin ? sharedHashWorker().begin() : undefined

  const verdictOf = async (ctx: FrameContext, header: UpdateHeader, tensors: TensorMap, body: Uint8Array | undefined): Promise<UpdateAck> => {
    const release = releaser(pool, body, header.round)
    const bytes = body?.byteLength
    let verdict: UpdateVerdict
    if (callback === undefined) {
      release()
      verdict = { accepted: false, reason: 'this site takes no updates' }
    } else {
      verdict = await callback({ peerId: ctx.peerId, header, tensors, release }, ctx.signal)
    }
    log.debug('update.received', { peer: ctx.peerId, protocol: ctx.protocol, round: header.round, site: header.site, bytes, accepted: verdict.accepted })
    const ack: UpdateAck = { kind: 'ack', round: header.round, accepted: verdict.accepted }
    if (verdict.reason !== undefined) ack.reason = verdict.reason.slice(0, 1024)
    return ack
  }

  /** 1.1.0: an update frame, then a digest frame unless the update named its hash. */
  const receive = async (fs: FrameStream, ctx: FrameContext): Promise<void> => {
    fs.assembleInto(pool)
    fs.hashBodiesWith(workerJob)
    const frame = await fs.read(UpdateFrame, { signal: ctx.signal })
    if (frame === undefined) return
    const { body } = frame
    log.debug('update.hashed', { peer: ctx.peerId, round: frame.header.round, bytes: body?.byteLength, on: frame.bodyDigest instanceof Promise ? 'worker' : 'event-loop', direction: 'in' })
    let received: { header: UpdateHeader, tensors: TensorMap }
    try {
      const named = frame.header.bodyHash
      if (named !== undefined) {
        const header: UpdateHeader = { ...frame.header, bodyHash: named }
        received = { header, tensors: decodeUpdateBody(header, body, maxFrameBytes, await frame.bodyDigest) }
      } else {
        const trailer = await fs.read(UpdateDigest, { signal: ctx.signal })
        if (trailer === undefined) throw new FrameDecodeError(`update for round ${frame.header.round} ended before its digest frame`)
        received = decodeTrailedUpdateBody(frame.header, body, trailer.header, maxFrameBytes, await frame.bodyDigest)
      }
    } catch (err) {
      giveBack(pool, body)
      throw err
    }
    const ack = await verdictOf(ctx, received.header, received.tensors, body)
    await fs.write(ack, undefined, { signal: ctx.signal })
    await fs.closeWrite({ signal: ctx.signal })
  }

  /**
   * 1.1.0. With a trailing digest, each slice is hashed just before it is written. A header that
   * names its hash (a body encoded, and hashed, beforehand) is sent as it is: nothing to hash, no trailer.
   */
  const sendTrailing = async (peerId: string, header: UpdateFrame, parts: readonly Uint8Array[], signal: AbortSignal): Promise<UpdateAck> => {
    const trailing = header.bodyHash === undefined
    let bodyBytes = 0
    for (const p of parts) bodyBytes += p.byteLength
    const job = trailing ? workerJob(bodyBytes) : undefined
    let fs: FrameStream
    try {
      fs = await host.openStream(peerId, UPDATE_PROTOCOL, { maxFrameBytes: UPDATE_SMALL_FRAME_BYTES, signal })
    } catch (err) {
      job?.abort()
      throw err
    }
    try {
      const inline = trailing && job === undefined ? createHash('sha256') : undefined
      let skip = BODY_HASH_FROM // the preamble's magic and (zero) hash field are not hashed
      const hashPart = (part: Uint8Array): Promise<void> | undefined => {
        if (skip >= part.byteLength) { skip -= part.byteLength; return undefined }
        const hashed = skip === 0 ? part : part.subarray(skip)
        skip = 0
        if (inline !== undefined) { inline.update(hashed); return undefined }
        // A full ring (a starved worker) makes the write wait, never the event loop.
        return job!.update(hashed)
      }
      await fs.write(header, slices(parts, UPDATE_SLICE_BYTES), { signal, ...(trailing ? { onBodyPart: hashPart } : {}) })
      if (trailing) {
        const digest = inline !== undefined ? inline.digest('hex') : (await job!.digest({ signal })).toString('hex')
        log.debug('update.hashed', { peer: peerId, round: header.round, bytes: bodyBytes, on: inline !== undefined ? 'event-loop' : 'worker' })
        await fs.write({ kind: 'digest', bodyHash: digest } satisfies UpdateDigest, undefined, { signal })
      }
      await fs.closeWrite({ signal })
      const response = await fs.read(UpdateAck, { signal })
      if (response === undefined) throw new MeshStreamError(`${peerId} closed ${UPDATE_PROTOCOL} without answering`)
      return response.header
    } catch (err) {
      job?.abort()
      fs.abort(err instanceof Error ? err : new Error(String(err)))
      throw err
    }
  }

  return {
    start: async () => {
      if (started) return
      started = true
      await host.handleStream(UPDATE_PROTOCOL, receive, { maxFrameBytes, timeoutMs, bodyDigestFrom: BODY_HASH_FROM })
      // host.handle's one-frame exchange, spelled out so the frame lands in the pool.
      await host.handleStream(UPDATE_PROTOCOL_1_0, async (fs, ctx) => {
        fs.assembleInto(pool)
        fs.hashBodiesWith(workerJob)
        const frame = await fs.read(UpdateRequest, { signal: ctx.signal })
        if (frame === undefined) return
        const { body } = frame
        let tensors: TensorMap
        try {
          tensors = decodeUpdateBody(frame.header, body, maxFrameBytes, await frame.bodyDigest)
        } catch (err) {
          giveBack(pool, body)
          throw err
        }
        await fs.write(await verdictOf(ctx, frame.header, tensors, body), undefined, { signal: ctx.signal })
        await fs.closeWrite({ signal: ctx.signal })
      }, { maxFrameBytes, timeoutMs, bodyDigestFrom: BODY_HASH_FROM })
    },
    onUpdate: (cb) => { callback = cb },
    pool,
    send: async (peerId, update, options = {}) => {
      const { tensors, body: given, blockSize, ...rest } = update
      const encodeOptions = blockSize === undefined ? { dtype: update.dtype } : { dtype: update.dtype, blockSize }
      const limitMs = options.timeoutMs ?? timeoutMs
      if (!legacyPeers.has(peerId)) {
        const timeout = AbortSignal.timeout(limitMs)
        const signal = options.signal === undefined ? timeout : AbortSignal.any([options.signal, timeout])
        try {
          // A pre-encoded body carries its hash already: name it up front, no trailer.
          if (given !== undefined) return await sendTrailing(peerId, { kind: 'update', ...rest, bodyHash: tensorBodyHash(given) }, [given], signal)
          return await sendTrailing(peerId, { kind: 'update', ...rest }, encodeTensorPartsUnhashed(tensors ?? new Map(), encodeOptions).parts, signal)
        } catch (err) {
          if (!isUnsupported(err)) {
            if (timeout.aborted && options.signal?.aborted !== true) throw new MeshRequestTimeoutError(`${UPDATE_PROTOCOL} request to ${peerId} got no answer within ${limitMs} ms`)
            throw err
          }
          markLegacy(peerId)
          log.info('update.legacy-peer', { peer: peerId, protocol: UPDATE_PROTOCOL_1_0 })
        }
      }
      const encoded = given === undefined ? encodeTensorParts(tensors ?? new Map(), encodeOptions) : { parts: [given], hash: tensorBodyHash(given) }
      const header: UpdateHeader = { kind: 'update', ...rest, bodyHash: encoded.hash }
      const response = await host.request(peerId, UPDATE_PROTOCOL_1_0, { header, body: encoded.parts }, {
        schema: UpdateAck, timeoutMs: limitMs, ...(options.signal !== undefined ? { signal: options.signal } : {})
      })
      return response.header
    }
  }
}
