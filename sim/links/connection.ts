/**
 * A MultiaddrConnection that carries another one (TCP or memory) through a
 * shaped link: bytes written go through the egress direction's token bucket
 * and delay line before reaching the real socket; bytes read from the socket
 * go through the ingress direction's before the upgrader (Noise, yamux) sees
 * them. Only the dialing side wraps its connection, so each connection is
 * shaped exactly once, in both directions.
 */
import { AbstractMultiaddrConnection } from '@libp2p/utils'
import type { AbortOptions, MultiaddrConnection, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'
import { LinkLossError } from '../errors.ts'
import type { LinkDirection } from './link.ts'
import { TimedQueue } from './timed-queue.ts'

/** Pieces this big keep pacing smooth (1.3 ms at 100 Mbit/s). */
const PIECE_BYTES = 16 * 1024
/** Bytes queued in a direction before writers are told to wait (egress) or the socket is paused (ingress). */
const DEFAULT_HIGH_WATER = 1024 * 1024

const END = Symbol('end')
type IngressItem = Uint8Array | Uint8ArrayList | typeof END

export interface ShapedConnectionInit {
  inner: MultiaddrConnection
  egress: LinkDirection
  ingress: LinkDirection
  now: () => number
  /** For messages: "alpha->bravo". */
  label: string
  highWaterBytes?: number
  /** Told when the link loses data (and so resets the connection). */
  onLoss?: (direction: 'egress' | 'ingress', atByte: number) => void
}

export class ShapedMultiaddrConnection extends AbstractMultiaddrConnection {
  private readonly inner: MultiaddrConnection
  private readonly shaping: ShapedConnectionInit
  private readonly highWater: number
  private readonly egressQueue: TimedQueue<Uint8Array>
  private readonly ingressQueue: TimedQueue<IngressItem>
  private needsDrain = false
  private pausedByQueue = false
  private pausedByReader = false
  private innerPaused = false
  private emptied: Array<() => void> = []

  constructor (init: ShapedConnectionInit) {
    super({
      log: init.inner.log,
      direction: init.inner.direction,
      remoteAddr: init.inner.remoteAddr,
      inactivityTimeout: init.inner.inactivityTimeout,
      maxReadBufferLength: init.inner.maxReadBufferLength
    })
    this.inner = init.inner
    this.shaping = init
    this.highWater = init.highWaterBytes ?? DEFAULT_HIGH_WATER

    this.egressQueue = new TimedQueue<Uint8Array>({
      now: init.now,
      deliver: (piece) => this.deliverEgress(piece),
      onDelivered: () => { this.afterEgress() }
    })
    this.ingressQueue = new TimedQueue<IngressItem>({
      now: init.now,
      deliver: (item) => { this.deliverIngress(item); return true },
      onDelivered: () => { this.updateInnerPause() }
    })

    this.inner.addEventListener('message', (evt: StreamMessageEvent) => { this.receive(evt.data) })
    this.inner.addEventListener('drain', () => { this.egressQueue.unblock() })
    this.inner.addEventListener('remoteCloseWrite', () => { this.receive(END) })
    this.inner.addEventListener('close', (evt: StreamCloseEvent) => {
      if (evt.error !== undefined) {
        this.clearQueues()
        this.abort(evt.error)
      } else {
        // The FIN travels the link like data: it arrives after the bytes before it.
        this.receive(END)
      }
    })
  }

  // ---- egress: local writer -> link -> real socket ----------------------

  sendData (data: Uint8ArrayList): { sentBytes: number, canSendMore: boolean } {
    const now = this.shaping.now()
    for (const buf of data) {
      for (let off = 0; off < buf.byteLength; off += PIECE_BYTES) {
        const piece = buf.subarray(off, Math.min(buf.byteLength, off + PIECE_BYTES))
        const due = this.shaping.egress.admit(piece.byteLength, now)
        if (due === 'lost') {
          this.lose('egress')
          return { sentBytes: data.byteLength, canSendMore: false }
        }
        this.egressQueue.push(piece, piece.byteLength, due)
      }
    }
    const canSendMore = this.egressQueue.queuedBytes < this.highWater
    if (!canSendMore) this.needsDrain = true
    return { sentBytes: data.byteLength, canSendMore }
  }

  private deliverEgress (piece: Uint8Array): boolean {
    try {
      return this.inner.send(piece)
    } catch (err) {
      queueMicrotask(() => { this.abort(err as Error) })
      return false
    }
  }

  private afterEgress (): void {
    const queued = this.egressQueue.queuedBytes
    if (this.needsDrain && queued < this.highWater / 2) {
      this.needsDrain = false
      this.safeDispatchEvent('drain')
    }
    if (queued === 0 && this.egressQueue.length === 0) {
      const waiting = this.emptied
      this.emptied = []
      for (const resolve of waiting) resolve()
    }
  }

  async sendClose (options?: AbortOptions): Promise<void> {
    if (this.egressQueue.length > 0) {
      await new Promise<void>((resolve, reject) => {
        this.emptied.push(resolve)
        options?.signal?.addEventListener('abort', () => { reject(options.signal?.reason) }, { once: true })
      })
    }
    await this.inner.close(options)
  }

  sendReset (err: Error): void {
    this.clearQueues()
    this.inner.abort(err)
  }

  // ---- ingress: real socket -> link -> upgrader -------------------------

  private receive (item: IngressItem): void {
    const size = item === END ? 0 : item.byteLength
    const due = this.shaping.ingress.admit(size, this.shaping.now())
    if (due === 'lost') {
      this.lose('ingress')
      return
    }
    this.ingressQueue.push(item, size, due)
    this.updateInnerPause()
  }

  private deliverIngress (item: IngressItem): void {
    if (item === END) {
      if (this.inner.status === 'open') this.onRemoteCloseWrite()
      else this.onTransportClosed()
      return
    }
    this.onData(item)
  }

  sendPause (): void {
    this.pausedByReader = true
    this.updateInnerPause()
  }

  sendResume (): void {
    this.pausedByReader = false
    this.updateInnerPause()
  }

  /** Pause the real socket while the reader is paused or the ingress line is full: TCP pushes back. */
  private updateInnerPause (): void {
    if (this.inner.status !== 'open') return
    const queued = this.ingressQueue.queuedBytes
    if (!this.pausedByQueue && queued >= this.highWater) this.pausedByQueue = true
    else if (this.pausedByQueue && queued < this.highWater / 2) this.pausedByQueue = false
    const pause = this.pausedByQueue || this.pausedByReader
    if (pause === this.innerPaused) return
    this.innerPaused = pause
    if (pause) this.inner.pause()
    else this.inner.resume()
  }

  // ---- loss --------------------------------------------------------------

  private lose (direction: 'egress' | 'ingress'): void {
    const atByte = this.shaping[direction].lossAtByte
    this.shaping.onLoss?.(direction, atByte)
    const err = new LinkLossError(`link ${this.shaping.label}: ${direction} data lost at byte ${atByte}; connection reset`)
    this.clearQueues()
    // Not from inside the writer's call stack: abort rewrites the write buffer.
    queueMicrotask(() => { this.abort(err) })
  }

  private clearQueues (): void {
    this.egressQueue.clear()
    this.ingressQueue.clear()
    const waiting = this.emptied
    this.emptied = []
    for (const resolve of waiting) resolve()
  }
}
