/**
 * Chunked, resumable blob transfer over the artifact protocol. The client
 * asks for a hash from an offset; the server streams chunk frames (awaiting
 * drain, so a slow reader slows it down) and an end frame. When the stream or
 * the connection dies, the client opens a new one and asks again from the
 * offset it reached; the sha256 runs incrementally and is checked at the end.
 * Neither side holds a blob whole: the server reads ranges, the sink writes them.
 */
import { createHash, type Hash } from 'node:crypto'
import type { Logger } from '../../coordinator/components.ts'
import { WireFormatError, FrameDecodeError } from '../../protocols/errors.ts'
import { ArtifactRequest, ArtifactResponse } from '../../protocols/artifact/artifact.ts'
import { ARTIFACT_CHUNK_TIMEOUT_MS, ARTIFACT_MAX_FRAME_BYTES, ARTIFACT_PROTOCOL, DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES } from '../../protocols/artifact/constants.ts'
import { BlobHashMismatchError, BlobNotFoundError, MeshNotStartedError, PeerNotAllowedError, RemoteError, TransferFailedError } from '../errors.ts'
import type { SiteHost } from './host.ts'
import type { BlobSink, BlobSource } from './blob-io.ts'
import { memorySink } from './blob-io.ts'

export { fileSink, memorySink, fileBlobSource, memoryBlobSource } from './blob-io.ts'
export type { BlobSink, BlobSource } from './blob-io.ts'

export interface ServeBlobsOptions {
  logger?: Logger
  /** Called for every fetch request served: an audit log records who took what. */
  onServe?: (e: { peerId: string, hash: string, offset: number, size: number }) => void
  /** Longest a whole fetch may take before the server gives up on it. Default 6 h. */
  timeoutMs?: number
}

/** Serves blobs from `source` on the artifact protocol. */
export async function serveBlobs (host: SiteHost, source: BlobSource, options: ServeBlobsOptions = {}): Promise<void> {
  await host.handleStream(ARTIFACT_PROTOCOL, async (fs, ctx) => {
    const request = await fs.read(ArtifactRequest, { signal: ctx.signal })
    if (request === undefined) return
    const req = request.header
    const size = await source.getBlobSize(req.hash)
    if (size === undefined) {
      await fs.write({ kind: 'not-found', hash: req.hash }, undefined, { signal: ctx.signal })
      await fs.closeWrite({ signal: ctx.signal })
      return
    }
    if (req.kind === 'stat') {
      await fs.write({ kind: 'stat', hash: req.hash, size }, undefined, { signal: ctx.signal })
      await fs.closeWrite({ signal: ctx.signal })
      return
    }
    if (req.offset > size) throw new FrameDecodeError(`fetch of ${req.hash} from offset ${req.offset} is past its end (${size} bytes)`)
    options.onServe?.({ peerId: ctx.peerId, hash: req.hash, offset: req.offset, size })
    options.logger?.debug('blob.serve', { peer: ctx.peerId, hash: req.hash, offset: req.offset, size })
    for (let off = req.offset; off < size; off += req.chunkBytes) {
      const chunk = await source.getBlobRange(req.hash, off, Math.min(req.chunkBytes, size - off))
      await fs.write({ kind: 'chunk', offset: off, size }, chunk, { signal: ctx.signal })
    }
    await fs.write({ kind: 'end', size }, undefined, { signal: ctx.signal })
    await fs.closeWrite({ signal: ctx.signal })
  }, { maxFrameBytes: 4096, timeoutMs: options.timeoutMs ?? 6 * 3600_000 })
}

export interface FetchBlobOptions {
  /** Where the bytes go; default an in-memory sink (small blobs only). */
  sink?: BlobSink
  /** Alternatively a store: the verified blob is put there (held in memory until then). */
  store?: { putBlob: (bytes: Uint8Array) => Promise<string> }
  signal?: AbortSignal
  onProgress?: (p: { received: number, total: number, attempt: number }) => void
  chunkBytes?: number
  /** Streams opened in all before giving up. Default 20. */
  maxAttempts?: number
  /** Backoff between attempts. Default 250 ms doubling to 10 s. */
  retry?: { initialMs: number, maxMs: number }
  /** A stream that delivers nothing for this long is cut and resumed. Default 30 s. */
  chunkTimeoutMs?: number
  logger?: Logger
}

export interface FetchBlobResult {
  hash: string
  size: number
  /** Streams opened (1 when nothing went wrong). */
  attempts: number
  /** The offset each attempt after the first resumed from. */
  resumedFrom: number[]
  /** The in-memory bytes when no sink or store was given. */
  bytes?: Uint8Array
}

const HASH_RE = /^[0-9a-f]{64}$/

export async function fetchBlob (host: SiteHost, peerId: string, hash: string, options: FetchBlobOptions = {}): Promise<FetchBlobResult> {
  if (!HASH_RE.test(hash)) throw new BlobNotFoundError(`'${hash}' is not a sha256 hex digest`)
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES
  if (!(Number.isInteger(chunkBytes) && chunkBytes > 0 && chunkBytes <= MAX_CHUNK_BYTES)) throw new TransferFailedError(`chunkBytes must be 1..${MAX_CHUNK_BYTES}, got ${chunkBytes}`)
  const maxAttempts = options.maxAttempts ?? 20
  const retry = options.retry ?? { initialMs: 250, maxMs: 10_000 }
  const chunkTimeoutMs = options.chunkTimeoutMs ?? ARTIFACT_CHUNK_TIMEOUT_MS
  const mem = options.sink === undefined ? memorySink() : undefined
  const sink = options.sink ?? mem!
  const signal = options.signal

  // Resume from what the sink already holds (a .part file left by an earlier run).
  let received = await sink.size()
  const hasher: Hash = createHash('sha256')
  if (received > 0) await sink.rehash(hasher, received)
  let total = -1
  let attempts = 0
  const resumedFrom: number[] = []

  for (;;) {
    signal?.throwIfAborted()
    if (attempts >= maxAttempts) throw new TransferFailedError(`fetch of ${hash} from ${peerId} gave up after ${attempts} attempts at ${received} bytes`)
    if (attempts > 0) {
      resumedFrom.push(received)
      await abortableDelay(Math.min(retry.maxMs, retry.initialMs * 2 ** (attempts - 1)), signal)
    }
    attempts++
    try {
      const done = await fetchOnce()
      if (done) break
    } catch (err) {
      if (signal?.aborted === true) throw signal.reason
      // Retrying cannot fix these: the peer lacks the blob, breaks the format, refused us, or is not a member.
      if (err instanceof BlobNotFoundError || err instanceof WireFormatError || err instanceof RemoteError || err instanceof PeerNotAllowedError || err instanceof MeshNotStartedError) throw err
      options.logger?.info('blob.fetch.interrupted', { peer: peerId, hash, received, attempt: attempts, error: (err as Error).message })
    }
  }

  const actual = hasher.digest('hex')
  if (actual !== hash) {
    await sink.discard()
    throw new BlobHashMismatchError(`blob from ${peerId} hashes to ${actual}, not the ${hash} that was asked for; discarded`)
  }
  await sink.commit()
  const result: FetchBlobResult = { hash, size: received, attempts, resumedFrom }
  if (mem !== undefined) {
    const bytes = mem.bytes()
    if (options.store !== undefined) await options.store.putBlob(bytes)
    else result.bytes = bytes
  }
  return result

  /** One stream: returns true at a clean end, throws when cut. */
  async function fetchOnce (): Promise<boolean> {
    const fs = await host.openStream(peerId, ARTIFACT_PROTOCOL, { maxFrameBytes: ARTIFACT_MAX_FRAME_BYTES, signal })
    // Each chunk goes to the sink as the pieces it arrived in: joining it first would copy every byte twice.
    fs.keepBodyParts()
    try {
      await fs.write({ kind: 'fetch', hash, offset: received, chunkBytes }, undefined, { signal })
      await fs.closeWrite({ signal })
      for (;;) {
        signal?.throwIfAborted()
        const stall = AbortSignal.timeout(chunkTimeoutMs)
        const frame = await fs.read(ArtifactResponse, { signal: signal === undefined ? stall : AbortSignal.any([signal, stall]) })
        if (frame === undefined) throw new TransferFailedError(`${peerId} closed the fetch of ${hash} at ${received} bytes without an end frame`)
        const h = frame.header
        if (h.kind === 'not-found') throw new BlobNotFoundError(`${peerId} does not hold blob ${hash}`)
        if (h.kind === 'stat') throw new FrameDecodeError(`${peerId} answered a fetch with a stat`)
        if (total >= 0 && h.size !== total) throw new FrameDecodeError(`${peerId} changed the size of ${hash} from ${total} to ${h.size}`)
        if (total < 0) sink.reserve?.(h.size)
        total = h.size
        if (h.kind === 'end') {
          if (received !== total) throw new FrameDecodeError(`${peerId} ended ${hash} at ${received} of ${total} bytes`)
          return true
        }
        const parts = frame.bodyParts ?? (frame.body === undefined ? [] : [frame.body])
        let bytes = 0
        for (const p of parts) bytes += p.byteLength
        if (h.offset !== received || bytes === 0 || bytes > chunkBytes || received + bytes > total) {
          throw new FrameDecodeError(`${peerId} sent chunk [${h.offset}, +${bytes}) of ${hash}; expected one at ${received} of at most ${chunkBytes} bytes`)
        }
        for (const p of parts) hasher.update(p)
        await sink.write(received, parts)
        received += bytes
        options.onProgress?.({ received, total, attempt: attempts })
      }
    } catch (err) {
      fs.abort(err as Error)
      throw err
    }
  }
}

async function abortableDelay (ms: number, signal?: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clearTimeout(timer); reject(signal!.reason) }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
