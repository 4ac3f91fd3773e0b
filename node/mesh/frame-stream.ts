/**
 * Frames over one libp2p stream. Reading respects backpressure: complete
 * frames waiting for the consumer beyond HIGH_WATER pause the stream (yamux
 * then stops granting window, so the sender's `send` returns false and it
 * waits on drain). Writing waits on `onDrain` whenever `send` says so.
 * Every byte read or written passes the wire tap first (plaintext, before
 * Noise), and the per-peer counters.
 */
import type { Stream } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'
import type { z } from 'zod'
import { decodeFrameHead, decodeFrameRaw, encodeFrameParts, ErrorHeader, FrameParser, parseHeader, type BodyHasherFactory, type Frame, type FrameBuffers, type ParsedFrame } from '../../protocols/frame/frame.ts'
import { MeshStreamError, RemoteError } from '../errors.ts'

export type WireTap = (direction: 'out' | 'in', peerId: string, protocol: string, bytes: Uint8Array) => void

export interface FrameStreamInit {
  stream: Stream
  peerId: string
  protocol: string
  maxFrameBytes: number
  tap?: WireTap
  count?: (direction: 'out' | 'in', bytes: number) => void
  /** Hash every frame's body from this offset on while it arrives (Frame.bodyDigest). */
  bodyDigestFrom?: number
}

/** Complete frames queued for the reader before the stream is paused. */
const HIGH_WATER = 8 * 1024 * 1024
const LOW_WATER = 2 * 1024 * 1024
/**
 * While paused, yamux still delivers what its window (up to 16 MiB) already
 * allowed; the default 4 MiB read buffer would overflow and reset the stream.
 */
const READ_BUFFER_BYTES = 32 * 1024 * 1024

function frameSize (f: ParsedFrame): number {
  let n = f.bytes.byteLength
  for (const p of f.bodyParts ?? []) n += p.byteLength
  return n
}

export class FrameStream {
  readonly stream: Stream
  readonly peerId: string
  readonly protocol: string
  readonly maxFrameBytes: number
  private readonly parser: FrameParser
  private readonly queue: ParsedFrame[] = []
  private queuedBytes = 0
  private ended = false
  private failure: Error | undefined
  private wake: (() => void) | undefined
  private readonly tap: WireTap | undefined
  private readonly count: FrameStreamInit['count']

  constructor (init: FrameStreamInit) {
    this.stream = init.stream
    this.peerId = init.peerId
    this.protocol = init.protocol
    this.maxFrameBytes = init.maxFrameBytes
    this.tap = init.tap
    this.count = init.count
    this.parser = new FrameParser({ maxFrameBytes: init.maxFrameBytes }, init.bodyDigestFrom === undefined ? {} : { bodyDigestFrom: init.bodyDigestFrom })
    this.stream.maxReadBufferLength = Math.max(this.stream.maxReadBufferLength, READ_BUFFER_BYTES)
    this.stream.addEventListener('message', (evt) => { this.onData(evt.data) })
    this.stream.addEventListener('remoteCloseWrite', () => { this.finish() })
    this.stream.addEventListener('close', (evt) => { this.finish(evt.error) })
  }

  private onData (data: Uint8Array | Uint8ArrayList): void {
    if (this.failure !== undefined) return
    try {
      // A list's buffers go in one by one: joining them would copy every byte.
      for (const chunk of data instanceof Uint8Array ? [data] : data) {
        this.tap?.('in', this.peerId, this.protocol, chunk)
        this.count?.('in', chunk.byteLength)
        this.parser.push(chunk)
      }
      for (let f = this.parser.nextFrame(); f !== undefined; f = this.parser.nextFrame()) {
        this.queue.push(f)
        this.queuedBytes += frameSize(f)
      }
    } catch (err) {
      // Oversized or malformed length: stop reading now, before buffering it.
      this.failure = err as Error
      this.parser.discard()
      this.stream.abort(err as Error)
    }
    if (this.queuedBytes > HIGH_WATER && this.stream.readStatus === 'readable') this.stream.pause()
    this.notify()
  }

  private finish (error?: Error): void {
    this.ended = true
    // A frame cut off mid-way never completes: give its hasher (perhaps a shared worker) back.
    this.parser.discard()
    if (error !== undefined && this.failure === undefined) this.failure = new MeshStreamError(`stream ${this.protocol} with ${this.peerId} failed: ${error.message}`, { cause: error })
    this.notify()
  }

  private notify (): void {
    const w = this.wake
    this.wake = undefined
    w?.()
  }

  /**
   * From now on, frame bodies are handed over as the pieces they arrived in
   * (Frame.bodyParts) instead of being joined: for a reader that copies each
   * body somewhere anyway. Call it before the peer can send.
   */
  keepBodyParts (): void {
    this.parser.keepBodyParts()
  }

  /**
   * From now on, large frames are assembled in memory from `buffers` (a
   * receive-buffer pool, body-pool.ts) instead of fresh memory. Safe at any
   * time: a frame already under way takes the new source from its halfway point.
   */
  assembleInto (buffers: FrameBuffers): void {
    this.parser.assembleInto(buffers)
  }

  /** From the next frame on, bodies are hashed by `factory`'s hashers (Frame.bodyDigest may then be a promise). */
  hashBodiesWith (factory: BodyHasherFactory): void {
    this.parser.hashBodiesWith(factory)
  }

  private async readParsed (options: { signal?: AbortSignal }): Promise<ParsedFrame | undefined> {
    for (;;) {
      const next = this.queue.shift()
      if (next !== undefined) {
        this.queuedBytes -= frameSize(next)
        if (this.queuedBytes < LOW_WATER && this.stream.readStatus === 'paused') this.stream.resume()
        return next
      }
      if (this.failure !== undefined) throw this.failure
      if (this.ended) {
        if (this.parser.bufferedBytes > 0) throw new MeshStreamError(`stream ${this.protocol} with ${this.peerId} ended inside a frame (${this.parser.bufferedBytes} bytes buffered)`)
        return undefined
      }
      options.signal?.throwIfAborted()
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => { reject(options.signal!.reason) }
        options.signal?.addEventListener('abort', onAbort, { once: true })
        this.wake = () => {
          options.signal?.removeEventListener('abort', onAbort)
          resolve()
        }
      })
    }
  }

  /**
   * The next frame, its header checked against `schema`; undefined when the
   * remote closed cleanly. An error frame from the peer throws RemoteError.
   */
  async read<S extends z.ZodType> (schema: S, options: { signal?: AbortSignal } = {}): Promise<Frame<z.infer<S>> | undefined> {
    const parsed = await this.readParsed(options)
    if (parsed === undefined) return undefined
    const limits = { maxFrameBytes: this.maxFrameBytes }
    const parts = parsed.bodyParts
    const raw: Frame<unknown> = parts === undefined ? decodeFrameRaw(parsed.bytes, limits) : { header: decodeFrameHead(parsed.bytes, frameSize(parsed) - parsed.bytes.byteLength, limits) }
    const remote = ErrorHeader.safeParse(raw.header)
    if (remote.success) throw new RemoteError(remote.data.code, `${this.peerId} answered ${this.protocol} with ${remote.data.code}: ${remote.data.message}`)
    const frame: Frame<z.infer<S>> = { header: parseHeader(raw.header, schema) }
    if (raw.body !== undefined) frame.body = raw.body
    if (parts !== undefined && parts.length > 0) frame.bodyParts = parts
    if (parsed.bodyDigest !== undefined) frame.bodyDigest = parsed.bodyDigest
    return frame
  }

  /**
   * One frame; a body given as parts goes out part by part, never joined.
   * `onBodyPart` sees each body part just before it is sent, and the part
   * waits for the promise it may return (a sender that
   * hashes while it writes).
   */
  async write (header: unknown, body?: Uint8Array | readonly Uint8Array[], options: { signal?: AbortSignal, onBodyPart?: (part: Uint8Array) => Promise<void> | undefined } = {}): Promise<void> {
    const parts = encodeFrameParts(header, body)
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!
      if (i > 0) {
        const seen = options.onBodyPart?.(part)
        if (seen !== undefined) await seen
      }
      this.tap?.('out', this.peerId, this.protocol, part)
      this.count?.('out', part.byteLength)
      let ok: boolean
      try {
        ok = this.stream.send(part)
      } catch (err) {
        throw new MeshStreamError(`cannot write to stream ${this.protocol} with ${this.peerId}: ${(err as Error).message}`, { cause: err })
      }
      if (!ok) {
        try {
          await this.stream.onDrain({ signal: options.signal })
        } catch (err) {
          if (options.signal?.aborted === true) throw options.signal.reason
          throw new MeshStreamError(`stream ${this.protocol} with ${this.peerId} closed while writing: ${(err as Error).message}`, { cause: err })
        }
      }
    }
  }

  /** Half-close: no more frames from us; the remote may still answer. */
  async closeWrite (options: { signal?: AbortSignal } = {}): Promise<void> {
    try {
      await this.stream.close({ signal: options.signal })
    } catch (err) {
      if (options.signal?.aborted === true) throw options.signal.reason
      throw new MeshStreamError(`cannot close stream ${this.protocol} with ${this.peerId}: ${(err as Error).message}`, { cause: err })
    }
  }

  /** Resolves once the stream is closed both ways, or after `timeoutMs`. */
  async closed (timeoutMs: number): Promise<void> {
    if (this.stream.status !== 'open') return
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, timeoutMs)
      function done (): void { clearTimeout(timer); resolve() }
      this.stream.addEventListener('close', done, { once: true })
    })
  }

  abort (err: Error): void {
    this.stream.abort(err)
  }
}
