/**
 * sha256 on a second thread, fed through shared memory as bytes are sent.
 *
 * Measured on loopback (docs/mesh.md): a 1.1.0 sender that hashes each 1 MiB
 * slice on its event loop just before writing it spends ≈ 100 ms per 100 MB
 * there, and that event loop is the transfer's bottleneck (the same update
 * with its digest computed beforehand ran in 515 ms instead of 671; a raw
 * stream took 489). Here the event loop only copies each slice into a ring
 * of shared slots (≈ 0.2–0.3 ms per MiB against ≈ 0.55 ms to hash it, and it
 * leaves the slice hot in cache for the encrypter); a worker thread hashes
 * the slots in order and posts the digest when the body ends.
 *
 * One body at a time per worker: `begin()` answers undefined while a body is
 * being hashed, and the caller hashes inline instead. The ring applies
 * backpressure: while all slots are full (the worker starved: it hashes
 * ≈ 10× faster than the wire moves bytes) `update` returns a promise and the
 * sender waits on it (Atomics.waitAsync), so a site's event loop is never
 * blocked and keeps answering its peers. The thread never holds its process open.
 */
import { Worker } from 'node:worker_threads'
import { HashWorkerError } from '../errors.ts'

export interface HashJob {
  /**
   * Queues bytes to hash. Undefined when they were copied into the ring at
   * once; a promise when the ring was full: keep the bytes unchanged until it
   * settles, and await it before queueing more is cheapest (later calls wait
   * behind it in order either way).
   */
  update: (bytes: Uint8Array) => Promise<void> | undefined
  /** The sha256 of everything queued; the job is over. */
  digest: (options?: { signal?: AbortSignal }) => Promise<Buffer>
  /** Drops the job (a send that failed); idempotent. */
  abort: () => void
}

export interface HashWorker {
  /** A job on the worker thread, or undefined while it hashes another body (hash inline then). */
  begin: () => HashJob | undefined
  /** Ends the thread; idempotent. A later begin() starts a new one. */
  stop: () => Promise<void>
}

export interface HashWorkerInit {
  /** Bytes per ring slot. Default 1 MiB (the update sender's slice). */
  slotBytes?: number
  /** Slots in the ring. Default 16: room for the worker to fall 16 MiB behind on a busy machine before the sender waits. */
  slots?: number
  /** Longest the caller blocks on a full ring before it gives up. Default 10 s. */
  stallMs?: number
}

// Control words: [HEAD] slots written, [TAIL] slots hashed, then one length per slot.
const HEAD = 0
const TAIL = 1
const LENGTHS = 2
const END = -1
const DROP = -2

/** Atomics.waitAsync (Node 16 and later), missing from this project's TypeScript lib. */
const waitAsync = (Atomics as unknown as {
  waitAsync: (array: Int32Array, index: number, value: number, timeoutMs: number) => { async: boolean, value: Promise<string> | string }
}).waitAsync

/**
 * The thread: plain CommonJS, so it needs no TypeScript loader. It waits
 * with Atomics.waitAsync, not Atomics.wait: a thread blocked in a
 * synchronous wait cannot be terminated, and would hold its process open
 * at exit. The port listener keeps the idle thread alive.
 */
const WORKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads')
const { createHash } = require('node:crypto')
const { control, data, slotBytes, slots } = workerData
const ctl = new Int32Array(control)
const bytes = new Uint8Array(data)
let hash = createHash('sha256')
let tail = 0
let ended = 0
parentPort.on('message', () => {})
async function run () {
for (;;) {
  while (Atomics.load(ctl, ${HEAD}) === tail) {
    const w = Atomics.waitAsync(ctl, ${HEAD}, tail)
    if (w.async) await w.value
  }
  const slot = tail % slots
  const n = ctl[${LENGTHS} + slot]
  if (n >= 0) hash.update(bytes.subarray(slot * slotBytes, slot * slotBytes + n))
  else {
    ended++
    if (n === ${END}) parentPort.postMessage({ job: ended, digest: hash.digest() })
    hash = createHash('sha256')
  }
  tail++
  Atomics.store(ctl, ${TAIL}, tail)
  Atomics.notify(ctl, ${TAIL})
}
}
run()
`

interface Thread {
  worker: Worker
  ctl: Int32Array
  data: Uint8Array
  head: number
  /** Jobs begun on this thread; the thread numbers the digests it posts the same way. */
  jobs: number
  /** The waiting job and its number (a dropped job's digest never matches). */
  waiting: { job: number, resolve: (d: Buffer) => void } | undefined
  failure: Error | undefined
}

export function createHashWorker (init: HashWorkerInit = {}): HashWorker {
  const slotBytes = init.slotBytes ?? 1024 * 1024
  const slots = init.slots ?? 16
  const stallMs = init.stallMs ?? 10_000
  if (!(Number.isInteger(slotBytes) && slotBytes > 0 && Number.isInteger(slots) && slots > 0)) throw new HashWorkerError(`slotBytes and slots must be positive integers, got ${slotBytes} and ${slots}`)
  let thread: Thread | undefined
  let busy = false

  const spawn = (): Thread => {
    const control = new SharedArrayBuffer(4 * (LENGTHS + slots))
    const data = new SharedArrayBuffer(slotBytes * slots)
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { control, data, slotBytes, slots } })
    const t: Thread = { worker, ctl: new Int32Array(control), data: new Uint8Array(data), head: 0, jobs: 0, waiting: undefined, failure: undefined }
    worker.on('message', (m: { job: number, digest: Uint8Array }) => {
      const w = t.waiting
      if (w?.job !== m.job) return
      t.waiting = undefined
      w.resolve(Buffer.from(m.digest))
    })
    const fail = (err: Error): void => {
      t.failure ??= new HashWorkerError(`the hash worker thread failed: ${err.message}`, { cause: err })
      if (thread === t) thread = undefined
    }
    worker.on('error', fail)
    worker.on('exit', (code) => { fail(new Error(`exited with code ${code}`)) })
    // After the listeners (a 'message' listener refs the thread again): idle, it never holds the process open.
    worker.unref()
    return t
  }

  /** Writes one slot if the ring has room. */
  const tryPut = (t: Thread, bytes: Uint8Array | undefined, marker?: number): boolean => {
    if (t.failure !== undefined) throw t.failure
    if (t.head - Atomics.load(t.ctl, TAIL) >= slots) return false
    const slot = t.head % slots
    if (bytes !== undefined) t.data.set(bytes, slot * slotBytes)
    t.ctl[LENGTHS + slot] = bytes?.byteLength ?? marker!
    t.head++
    Atomics.store(t.ctl, HEAD, t.head)
    Atomics.notify(t.ctl, HEAD)
    return true
  }

  /** Writes one slot, waiting without blocking the event loop while the ring is full. */
  const put = async (t: Thread, bytes: Uint8Array | undefined, marker?: number): Promise<void> => {
    const deadline = Date.now() + stallMs
    while (!tryPut(t, bytes, marker)) {
      if (Date.now() > deadline) throw new HashWorkerError(`the hash worker thread took no bytes for ${stallMs} ms`)
      const waited = waitAsync(t.ctl, TAIL, Atomics.load(t.ctl, TAIL), 50)
      if (waited.async) await waited.value
    }
  }

  /** A thread whose job count can no longer be trusted: the next begin() starts afresh. */
  const discard = (t: Thread): void => {
    if (thread === t) thread = undefined
    void t.worker.terminate()
  }

  return {
    begin: () => {
      if (busy) return undefined
      const t = thread ??= spawn()
      busy = true
      const job = ++t.jobs
      /** No more update/digest calls: the job has ended or is ending. */
      let over = false
      /** Writes that found the ring full, in order; undefined once they are all in. */
      let backlog: Promise<void> | undefined
      let dropped = false
      const writeAll = async (bytes: Uint8Array): Promise<void> => {
        for (let off = 0; off < bytes.byteLength && !dropped; off += slotBytes) await put(t, bytes.subarray(off, Math.min(off + slotBytes, bytes.byteLength)))
      }
      // Every job ends the thread's count with exactly one END or DROP, or the digests that follow would not match.
      // The worker is free again once the DROP is in the ring: at once when there is room, else when there is.
      const abort = (): void => {
        if (over) return
        over = true
        dropped = true
        try {
          if (backlog === undefined && tryPut(t, undefined, DROP)) { busy = false; return }
        } catch {
          discard(t)
          busy = false
          return
        }
        const before = backlog ?? Promise.resolve()
        before.then(async () => { await put(t, undefined, DROP) }).catch(() => { discard(t) }).finally(() => { busy = false })
      }
      return {
        update: (bytes) => {
          if (over) throw new HashWorkerError('this hash job is over')
          let rest = bytes
          if (backlog === undefined) {
            let off = 0
            while (off < bytes.byteLength && tryPut(t, bytes.subarray(off, Math.min(off + slotBytes, bytes.byteLength)))) off += slotBytes
            if (off >= bytes.byteLength) return undefined
            rest = bytes.subarray(off)
          }
          const mine = (backlog ?? Promise.resolve()).then(async () => { await writeAll(rest) })
          backlog = mine
          // Whoever awaits it sees a failure; digest() and abort() see it through the backlog.
          mine.then(() => { if (backlog === mine) backlog = undefined }, () => {})
          return mine
        },
        digest: async (options = {}) => {
          if (over) throw new HashWorkerError('this hash job is over')
          if (options.signal?.aborted === true) {
            abort()
            throw options.signal.reason
          }
          over = true
          try {
            const digest = new Promise<Buffer>((resolve, reject) => {
              const onAbort = (): void => { t.waiting = undefined; t.worker.off('exit', onExit); reject(options.signal!.reason) }
              options.signal?.addEventListener('abort', onAbort, { once: true })
              const onExit = (): void => { options.signal?.removeEventListener('abort', onAbort); reject(t.failure ?? new HashWorkerError('the hash worker thread exited')) }
              t.worker.once('exit', onExit)
              t.waiting = { job, resolve: (d) => { options.signal?.removeEventListener('abort', onAbort); t.worker.off('exit', onExit); resolve(d) } }
            })
            digest.catch(() => {}) // awaited below, unless a write fails first
            // Held open only while a digest is awaited.
            t.worker.ref()
            try {
              if (backlog !== undefined) await backlog
              await put(t, undefined, END)
            } catch (err) {
              discard(t)
              throw err
            }
            return await digest
          } finally {
            t.worker.unref()
            busy = false
          }
        },
        abort
      }
    },
    stop: async () => {
      const t = thread
      thread = undefined
      if (t !== undefined) await t.worker.terminate()
    }
  }
}

let shared: HashWorker | undefined

/**
 * The process's one hash worker (16 MiB of ring, one thread), shared by every
 * update service in it: a simulator may run dozens of sites in one process,
 * and a body that finds it busy is hashed inline.
 */
export function sharedHashWorker (): HashWorker {
  shared ??= createHashWorker()
  return shared
}
