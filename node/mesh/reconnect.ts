/**
 * Keeps the bootstrap members connected: dials each one on start and again
 * whenever it drops, with exponential backoff (initialMs doubling up to maxMs)
 * while dials fail. A blocked peer (refused by membership) is left alone.
 */
import { setMaxListeners } from 'node:events'
import type { Logger } from '../../coordinator/components.ts'

export interface ReconnectInit {
  initialMs: number
  maxMs: number
}

export interface ReconnectTarget {
  peerId: string
  address: string
}

export interface Reconnector {
  start: () => void
  stop: () => void
  /** The peer dropped: schedule a redial. */
  lost: (peerId: string) => void
  /** The peer is connected: reset its backoff. */
  connected: (peerId: string) => void
  /** Attempts made so far per peer (for tests and metrics). */
  attempts: (peerId: string) => number
}

interface Slot {
  target: ReconnectTarget
  failures: number
  attempts: number
  timer?: NodeJS.Timeout
  dialing: boolean
}

export function createReconnector (
  init: ReconnectInit,
  targets: ReconnectTarget[],
  deps: { dial: (target: ReconnectTarget, signal: AbortSignal) => Promise<void>, isConnected: (peerId: string) => boolean, isBlocked: (peerId: string) => boolean, logger: Logger }
): Reconnector {
  const slots = new Map(targets.map(t => [t.peerId, { target: t, failures: 0, attempts: 0, dialing: false } satisfies Slot as Slot]))
  let running = false
  let controller = new AbortController()

  const schedule = (slot: Slot, delayMs: number): void => {
    if (!running || slot.timer !== undefined || slot.dialing) return
    slot.timer = setTimeout(() => {
      slot.timer = undefined
      void attempt(slot)
    }, delayMs)
    slot.timer.unref?.()
  }

  const backoff = (failures: number): number => Math.min(init.maxMs, init.initialMs * 2 ** Math.min(failures, 30))

  const attempt = async (slot: Slot): Promise<void> => {
    const { peerId } = slot.target
    if (!running || deps.isBlocked(peerId) || deps.isConnected(peerId)) return
    slot.dialing = true
    slot.attempts++
    try {
      await deps.dial(slot.target, controller.signal)
      slot.failures = 0
    } catch (err) {
      slot.failures++
      const delay = backoff(slot.failures)
      deps.logger.debug('redial.failed', { peer: peerId, attempt: slot.attempts, retryInMs: delay, error: (err as Error).message })
      slot.dialing = false
      schedule(slot, delay)
      return
    }
    slot.dialing = false
  }

  return {
    start: () => {
      if (running) return
      running = true
      controller = new AbortController()
      // Every dial in flight listens on this one signal: a member of 64 may dial dozens at once, and that is no leak.
      setMaxListeners(0, controller.signal)
      for (const slot of slots.values()) schedule(slot, 0)
    },
    stop: () => {
      if (!running) return
      running = false
      controller.abort()
      for (const slot of slots.values()) {
        if (slot.timer !== undefined) clearTimeout(slot.timer)
        slot.timer = undefined
      }
    },
    lost: (peerId) => {
      const slot = slots.get(peerId)
      if (slot === undefined || deps.isBlocked(peerId)) return
      deps.logger.info('peer.lost', { peer: peerId, retryInMs: backoff(slot.failures) })
      schedule(slot, backoff(slot.failures))
    },
    connected: (peerId) => {
      const slot = slots.get(peerId)
      if (slot === undefined) return
      slot.failures = 0
      if (slot.timer !== undefined) clearTimeout(slot.timer)
      slot.timer = undefined
    },
    attempts: (peerId) => slots.get(peerId)?.attempts ?? 0
  }
}
