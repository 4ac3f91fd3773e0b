/**
 * A FIFO that hands each item on at its due time (a delay line). Items are
 * pushed already in due-time order (link.ts guarantees it). Delivery can be
 * refused by the consumer (a full socket); the queue then waits for unblock().
 * Timer lateness never accumulates: due times come from the link schedule,
 * not from when the previous timer fired.
 */
export interface TimedQueueInit<T> {
  now: () => number
  /** Hands an item on; false means "accepted, but send nothing more until unblock()". */
  deliver: (item: T) => boolean
  /** Called after every delivery (for drain and pause bookkeeping). */
  onDelivered?: () => void
}

interface Entry<T> { item: T, size: number, dueAt: number }

export class TimedQueue<T> {
  private entries: Array<Entry<T>> = []
  private head = 0
  private timer: ReturnType<typeof setTimeout> | undefined
  private blocked = false
  private pumping = false
  private bytes = 0

  constructor (private readonly init: TimedQueueInit<T>) {}

  get queuedBytes (): number { return this.bytes }
  get length (): number { return this.entries.length - this.head }

  push (item: T, size: number, dueAt: number): void {
    this.entries.push({ item, size, dueAt })
    this.bytes += size
    if (this.timer === undefined) this.pump()
  }

  unblock (): void {
    this.blocked = false
    if (this.timer === undefined) this.pump()
  }

  clear (): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    this.entries = []
    this.head = 0
    this.bytes = 0
  }

  private pump (): void {
    if (this.pumping || this.blocked) return
    this.pumping = true
    try {
      while (this.head < this.entries.length) {
        const e = this.entries[this.head]!
        const wait = e.dueAt - this.init.now()
        if (wait > 0) {
          // setTimeout cannot wait less than 1 ms; late by < 1 ms is fine.
          this.timer = setTimeout(() => { this.timer = undefined; this.pump() }, Math.max(1, wait))
          return
        }
        this.head++
        this.bytes -= e.size
        if (this.head > 1024 && this.head * 2 > this.entries.length) {
          this.entries = this.entries.slice(this.head)
          this.head = 0
        }
        const more = this.init.deliver(e.item)
        this.init.onDelivered?.()
        if (!more) {
          this.blocked = true
          return
        }
      }
    } finally {
      this.pumping = false
    }
  }
}
