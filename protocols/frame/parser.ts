/**
 * Incremental frame parser: feed it chunks as they arrive, take whole frames
 * out. It refuses a frame as soon as its length field says it is too large,
 * and does the per-byte work while each chunk is still hot in cache:
 *
 * - A frame spread over many chunks is copied into one buffer as they come,
 *   not in one pass at the end. The buffer is allocated only once half the
 *   frame has arrived, so a peer cannot make us allocate a large claimed
 *   length for the price of four bytes; memory lent by a pool that already
 *   holds it (`buffers.take`) is used from the first byte.
 * - Optionally the sha256 of every frame's body from a given offset on
 *   (`bodyDigestFrom`), so a receiver can check a body's hash without a
 *   second pass over it; inline with node:crypto, or by a hasher the
 *   receiver supplies (`bodyHasher`: another thread for large bodies, whose
 *   digest is then a promise).
 * - Optionally no assembly at all (`bodyParts`): the body comes out as the
 *   pieces it arrived in, for a consumer that copies it somewhere anyway
 *   (a chunk into a blob sink) and would otherwise pay two copies.
 */
import { createHash } from 'node:crypto'
import { FrameDecodeError, FrameTooLargeError } from '../errors.ts'
import { HEADER_LENGTH_BYTES, LENGTH_BYTES, MAX_HEADER_BYTES, MIN_FRAME_BYTES } from './constants.ts'
import { claimedFrameBytes, type FrameLimits } from './frame.ts'

/** Hashes one frame's body as it arrives. */
export interface BodyHasher {
  /** The next bytes; they stay unchanged until the frame's digest settles. */
  update: (bytes: Uint8Array) => unknown
  digest: () => Uint8Array | Promise<Uint8Array>
  /** The frame will never complete: drop the hash. */
  abort?: () => void
}

/** A hasher for a body of `bytes` bytes to hash, or undefined for node:crypto on this thread. */
export type BodyHasherFactory = (bytes: number) => BodyHasher | undefined

export interface FrameParserOptions {
  /** Hash each frame's body from this offset on (body-relative) while it arrives. */
  bodyDigestFrom?: number
  /** Who hashes (see BodyHasherFactory); default node:crypto on this thread. */
  bodyHasher?: BodyHasherFactory
  /**
   * Never join a frame: `bytes` is then only the length prefix and header,
   * and `bodyParts` the body as it arrived. The header length is checked
   * as soon as it arrives.
   */
  bodyParts?: boolean
  /**
   * Where frames above 64 KiB are assembled (default: fresh memory once
   * half the frame has arrived). `take` may lend memory that costs nothing
   * to use (a pool's idle buffer): it is asked at the frame's first byte, so
   * the frame is copied into it while each chunk is still hot. `allocate`
   * is asked at the halfway point when `take` had nothing.
   */
  buffers?: FrameBuffers
}

export interface FrameBuffers {
  take: (bytes: number) => Uint8Array | undefined
  allocate: (bytes: number) => Uint8Array
}

export interface ParsedFrame {
  /** The whole frame, length prefix included; in bodyParts mode only the prefix and header. */
  bytes: Uint8Array
  /** bodyParts mode: the body in the pieces it arrived in, in order (views, not copies). */
  bodyParts?: Uint8Array[]
  /**
   * sha256 of the body from `bodyDigestFrom` on; absent when not asked for
   * or the body is shorter. A promise when a supplied hasher works elsewhere.
   */
  bodyDigest?: Uint8Array | Promise<Uint8Array>
}

const inlineHasher = (): BodyHasher => {
  const hash = createHash('sha256')
  return { update: (bytes) => hash.update(bytes), digest: () => hash.digest() }
}

/** Frames up to this size are assembled from their first byte on: too small to matter. */
const EAGER_ASSEMBLY_BYTES = 64 * 1024

export class FrameParser {
  /** Chunks pushed but not yet cut into frames. */
  private readonly pending: Uint8Array[] = []
  private pendingBytes = 0
  // The frame being received.
  private need = -1
  private got = 0
  private parts: Uint8Array[] = []
  private assembly: Uint8Array | undefined
  private hasher: BodyHasher | undefined
  private hasherFor: BodyHasherFactory | undefined
  private hashFrom = -1
  private bodyFrom = -1
  private readonly digestFrom: number | undefined
  private partsMode: boolean
  private buffers: FrameBuffers | undefined

  constructor (private readonly limits: FrameLimits, options: FrameParserOptions = {}) {
    this.digestFrom = options.bodyDigestFrom
    this.partsMode = options.bodyParts === true
    this.buffers = options.buffers
    this.hasherFor = options.bodyHasher
  }

  /** Switches bodyParts mode on from the next frame on (a stream that knows before any byte arrives). */
  keepBodyParts (): void {
    if (this.need < 0) this.partsMode = true
  }

  /** Sets where large frames are assembled from now on (see FrameParserOptions.buffers). */
  assembleInto (buffers: FrameBuffers): void {
    this.buffers = buffers
  }

  /** Sets who hashes bodies from the next frame on (see FrameParserOptions.bodyHasher). */
  hashBodiesWith (factory: BodyHasherFactory): void {
    this.hasherFor = factory
  }

  /** The stream ended or failed: a frame half received is dropped, and its hash with it. */
  discard (): void {
    this.hasher?.abort?.()
    this.hasher = undefined
  }

  /** Bytes held that are not yet part of a returned frame. */
  get bufferedBytes (): number { return this.pendingBytes + this.got }

  push (chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return
    this.pending.push(chunk)
    this.pendingBytes += chunk.byteLength
  }

  /** The next complete frame's bytes, or undefined until enough has arrived. */
  next (): Uint8Array | undefined {
    return this.nextFrame()?.bytes
  }

  /** Like next(), with the body digest when the parser was asked for one. */
  nextFrame (): ParsedFrame | undefined {
    if (this.need < 0) {
      if (this.pendingBytes < LENGTH_BYTES) return undefined
      this.need = claimedFrameBytes(this.peekPending(LENGTH_BYTES), this.limits)
    }
    while (this.got < this.need && this.pending.length > 0) {
      const chunk = this.pending[0]!
      const k = Math.min(chunk.byteLength, this.need - this.got)
      if (k === chunk.byteLength) this.pending.shift()
      else this.pending[0] = chunk.subarray(k)
      this.pendingBytes -= k
      this.feed(chunk.subarray(0, k))
    }
    return this.got === this.need ? this.complete() : undefined
  }

  private feed (piece: Uint8Array): void {
    const at = this.got
    const after = at + piece.byteLength
    if (this.assembly === undefined && !this.partsMode && !(at === 0 && after === this.need)) {
      const large = this.need > EAGER_ASSEMBLY_BYTES
      // Lent memory that is already ours costs nothing: assemble from the first byte.
      if (large && at === 0) this.assembly = this.buffers?.take(this.need)
      if (this.assembly === undefined && (!large || 2 * after >= this.need)) {
        this.assembly = large && this.buffers !== undefined ? this.buffers.allocate(this.need) : new Uint8Array(this.need)
        let off = 0
        for (const p of this.parts) { this.assembly.set(p, off); off += p.byteLength }
        this.parts = []
      }
    }
    if (this.assembly !== undefined) this.assembly.set(piece, at)
    else this.parts.push(piece)
    this.got = after
    if (this.digestFrom === undefined && !this.partsMode) return
    if (this.bodyFrom < 0 && after >= MIN_FRAME_BYTES) {
      // The header length is known now; no byte before it is ever hashed.
      const headerBytes = new DataView(this.frameBytes(LENGTH_BYTES, HEADER_LENGTH_BYTES).buffer).getUint32(0)
      this.bodyFrom = MIN_FRAME_BYTES + headerBytes
      if (this.partsMode) {
        if (headerBytes > MAX_HEADER_BYTES) throw new FrameTooLargeError(`frame header of ${headerBytes} bytes exceeds ${MAX_HEADER_BYTES}`)
        if (this.bodyFrom > this.need) throw new FrameDecodeError(`frame header of ${headerBytes} bytes runs past the frame end (${this.need} bytes)`)
      }
      if (this.digestFrom !== undefined) {
        this.hashFrom = this.bodyFrom + this.digestFrom
        if (this.hashFrom <= this.need) this.hasher = this.hasherFor?.(this.need - this.hashFrom) ?? inlineHasher()
      }
    }
    // Hashed straight from the bytes just written, while they are still in cache: from the assembly
    // when there is one (it is the frame's and stays put), else from the piece (kept in `parts`).
    if (this.hasher !== undefined && after > this.hashFrom) {
      const from = Math.max(at, this.hashFrom)
      this.hasher.update(this.assembly !== undefined ? this.assembly.subarray(from, after) : piece.subarray(from - at))
    }
  }

  private complete (): ParsedFrame {
    const frame: ParsedFrame = this.partsMode ? this.split() : { bytes: this.assembly ?? this.parts[0] ?? new Uint8Array(0) }
    if (this.hasher !== undefined) {
      const digest = this.hasher.digest()
      // A frame refused for another reason never awaits its digest: that is no unhandled rejection.
      if (digest instanceof Promise) digest.catch(() => {})
      frame.bodyDigest = digest
    }
    this.reset()
    return frame
  }

  private reset (): void {
    this.need = -1
    this.got = 0
    this.parts = []
    this.assembly = undefined
    this.hasher = undefined
    this.hashFrom = -1
    this.bodyFrom = -1
  }

  /** bodyParts mode: a copy of the (small) prefix and header, and the body's pieces as views. */
  private split (): ParsedFrame {
    const bytes = this.frameBytes(0, this.bodyFrom)
    const bodyParts: Uint8Array[] = []
    let pos = 0
    for (const p of this.parts) {
      const from = Math.max(this.bodyFrom - pos, 0)
      if (from < p.byteLength) bodyParts.push(from === 0 ? p : p.subarray(from))
      pos += p.byteLength
    }
    return { bytes, bodyParts }
  }

  /** A copy of `n` bytes at `off` of the frame received so far (small reads only). */
  private frameBytes (off: number, n: number): Uint8Array {
    if (this.assembly !== undefined) return this.assembly.slice(off, off + n)
    const out = new Uint8Array(n)
    let pos = 0
    for (const p of this.parts) {
      const from = Math.max(off - pos, 0)
      const to = Math.min(off + n - pos, p.byteLength)
      if (from < to) out.set(p.subarray(from, to), pos + from - off)
      pos += p.byteLength
      if (pos >= off + n) break
    }
    return out
  }

  /** The first `n` pending bytes without consuming them (n is small). */
  private peekPending (n: number): Uint8Array {
    const first = this.pending[0]!
    if (first.byteLength >= n) return first.subarray(0, n)
    const out = new Uint8Array(n)
    let off = 0
    for (const c of this.pending) {
      const k = Math.min(c.byteLength, n - off)
      out.set(c.subarray(0, k), off)
      off += k
      if (off === n) break
    }
    return out
  }
}
