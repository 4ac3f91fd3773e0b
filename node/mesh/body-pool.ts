/**
 * Receive buffers for large frames, kept warm across rounds.
 *
 * A 100 MB frame assembled into fresh memory pays for it on the receiver's
 * event loop: glibc serves the allocation with a fresh mmap, so every 4 KiB
 * page faults on first write (≈ 60 ms per 100 MB here), and V8 counts the
 * new external memory towards its next full GC. A buffer handed back by the
 * consumer once it is done with the update keeps its pages mapped, and the
 * next update of the same size lands in it.
 *
 * Ownership: `take`/`allocate` lend a buffer; the consumer hands it back
 * with `give` exactly once, and only when nothing views it any more (f32
 * tensors decoded with copy:false are views of it). A buffer never handed
 * back is simply garbage-collected: forgetting is safe, handing back early
 * is not. At most `maxBuffers` idle buffers are held, and an idle one is
 * dropped after `idleMs`.
 */
import type { Clock } from '../../coordinator/components.ts'
import type { FrameBuffers } from '../../protocols/frame/frame.ts'
import { systemClock } from '../components.ts'
import { BodyPoolError, BodyReleasedError } from '../errors.ts'

export interface BodyPoolInit {
  /** Idle buffers held at most. Default 2 (one update being folded in while the next arrives). */
  maxBuffers?: number
  /** An idle buffer unused this long is dropped. Default 60 s. */
  idleMs?: number
  /** Frames smaller than this are not worth pooling. Default 1 MiB. */
  minBytes?: number
}

/**
 * The frame parser's `buffers` (FrameBuffers): `take` lends an idle buffer of at least `bytes`
 * (no allocation) as a view of exactly `bytes`, or undefined when none fits; `allocate` lends
 * fresh memory with room for a longer header next time, so it can join the pool when handed back.
 */
export interface BodyPool extends FrameBuffers {
  /** Whether `view` lies in a buffer this pool lent and that is not handed back yet. */
  lent: (view: Uint8Array) => boolean
  /** Hands back the buffer behind `view`. Throws BodyReleasedError when it was handed back already. */
  give: (view: Uint8Array) => void
  /** Drops idle buffers unused for `idleMs` (also run by a timer after each hand-back). */
  sweep: () => void
  /** Drops every idle buffer. */
  clear: () => void
  /** Idle buffers and their bytes (for tests and logs). */
  stats: () => { idle: number, idleBytes: number }
  readonly minBytes: number
}

const DEFAULT_MAX_BUFFERS = 2
const DEFAULT_IDLE_MS = 60_000
const DEFAULT_MIN_BYTES = 1024 * 1024

/** Never lend a buffer more than this many times the size asked for: a small frame must not pin a huge one. */
const MAX_SLACK = 2
/**
 * Fresh pooled buffers get this much room beyond the frame: the next round's
 * frame may carry a longer header (a later round number, a nonce, 1.0.0's
 * bodyHash), and should still fit. A header is at most 64 KiB.
 */
const HEADROOM = 64 * 1024

type State = 'lent' | 'idle' | 'dropped'

export function createBodyPool (init: BodyPoolInit = {}, components: { clock?: Clock } = {}): BodyPool {
  const clock = components.clock ?? systemClock
  const maxBuffers = init.maxBuffers ?? DEFAULT_MAX_BUFFERS
  const idleMs = init.idleMs ?? DEFAULT_IDLE_MS
  const minBytes = init.minBytes ?? DEFAULT_MIN_BYTES
  if (!(Number.isInteger(maxBuffers) && maxBuffers >= 0)) throw new BodyPoolError(`maxBuffers must be an integer >= 0, got ${maxBuffers}`)
  if (!(idleMs > 0)) throw new BodyPoolError(`idleMs must be > 0, got ${idleMs}`)
  // Weak: a lent buffer the consumer never hands back must stay collectable.
  const states = new WeakMap<ArrayBufferLike, State>()
  let idle: Array<{ buffer: ArrayBuffer, since: number }> = []
  let timer: ReturnType<typeof setTimeout> | undefined

  const drop = (keep: (e: { buffer: ArrayBuffer, since: number }) => boolean): void => {
    idle = idle.filter(e => {
      if (keep(e)) return true
      states.set(e.buffer, 'dropped')
      return false
    })
  }

  const sweep = (): void => {
    if (timer !== undefined) clearTimeout(timer)
    timer = undefined
    const now = clock.now()
    drop(e => now - e.since < idleMs)
    if (idle.length > 0) schedule()
  }

  const schedule = (): void => {
    if (timer !== undefined) return
    timer = setTimeout(sweep, idleMs)
    timer.unref()
  }

  return {
    minBytes,
    take: (bytes) => {
      if (bytes < minBytes) return undefined
      let best = -1
      for (let i = 0; i < idle.length; i++) {
        const size = idle[i]!.buffer.byteLength
        if (size >= bytes && size <= bytes * MAX_SLACK && (best < 0 || size < idle[best]!.buffer.byteLength)) best = i
      }
      if (best < 0) return undefined
      const buffer = idle.splice(best, 1)[0]!.buffer
      states.set(buffer, 'lent')
      return new Uint8Array(buffer, 0, bytes)
    },
    allocate: (bytes) => {
      if (bytes < minBytes) return new Uint8Array(bytes)
      const view = new Uint8Array(new ArrayBuffer(bytes + HEADROOM), 0, bytes)
      states.set(view.buffer, 'lent')
      return view
    },
    lent: (view) => states.get(view.buffer) === 'lent',
    give: (view) => {
      const state = states.get(view.buffer)
      if (state === undefined) throw new BodyPoolError(`a buffer of ${view.buffer.byteLength} bytes was handed back to a pool that never lent it`)
      if (state !== 'lent') throw new BodyReleasedError(`a receive buffer of ${view.buffer.byteLength} bytes was handed back twice`)
      const buffer = view.buffer as ArrayBuffer
      if (maxBuffers === 0) { states.set(buffer, 'dropped'); return }
      states.set(buffer, 'idle')
      idle.push({ buffer, since: clock.now() })
      // Over the bound: the longest idle goes.
      while (idle.length > maxBuffers) states.set(idle.shift()!.buffer, 'dropped')
      schedule()
    },
    sweep,
    clear: () => {
      drop(() => false)
      if (timer !== undefined) clearTimeout(timer)
      timer = undefined
    },
    stats: () => ({ idle: idle.length, idleBytes: idle.reduce((n, e) => n + e.buffer.byteLength, 0) })
  }
}
