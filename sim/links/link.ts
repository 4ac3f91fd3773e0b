/**
 * The arithmetic of one direction of a shaped link: when do bytes that enter
 * it now arrive at the other end, and is this the chunk that gets lost.
 *
 * - Bandwidth: a token bucket. Tokens accrue at the link rate up to a small
 *   burst; a chunk needs its size in tokens and may go into debt, so it leaves
 *   when the debt is paid. A long transfer therefore takes size / rate.
 * - Latency and jitter: each chunk arrives latencyMs (+ jitterMs × N(0,1),
 *   seeded, never negative) after it left, but never before the chunk in
 *   front of it: a byte stream is not reordered.
 * - Loss: `loss` is the probability that a given MiB is lost. A TCP stream
 *   with a hole in it cannot continue, so a loss resets the connection. The
 *   byte offset of the first loss is drawn once per direction (geometric in
 *   bytes), so it does not depend on how writers chunk their data.
 *
 * Times are in milliseconds on whatever clock the caller passes in.
 */
import type { Random } from '../../coordinator/components.ts'
import type { LinkSpec } from '../topology.ts'

export const MIB = 1024 * 1024

/** Smallest bucket; big enough for one frame, small enough not to distort timing. */
export const MIN_BURST_BYTES = 16 * 1024

export interface LinkDirection {
  readonly spec: LinkSpec
  /** Bytes admitted so far. */
  readonly bytes: number
  /** The byte offset at which this direction loses data (Infinity: never). */
  readonly lossAtByte: number
  /** Admits `size` bytes at time `now`: their arrival time, or 'lost'. */
  admit: (size: number, now: number) => number | 'lost'
}

/** Bytes until the first loss, for a per-MiB loss probability. */
export function drawLossOffset (lossPerMiB: number, random: Random): number {
  if (lossPerMiB <= 0) return Infinity
  if (lossPerMiB >= 1) return 0
  // P(a given byte survives) = (1 - p)^(1/MiB); geometric by inversion.
  const u = random.next()
  return Math.floor(MIB * Math.log(1 - u) / Math.log(1 - lossPerMiB))
}

export function createLinkDirection (spec: LinkSpec, random: Random): LinkDirection {
  const rate = spec.bandwidthMbps === null ? Infinity : spec.bandwidthMbps * 125 // bytes per ms
  const burst = Math.max(MIN_BURST_BYTES, rate === Infinity ? 0 : rate) // one ms of traffic
  let tokens = burst
  let refilledAt = -Infinity
  let lastArrival = -Infinity
  let bytes = 0
  const lossAtByte = drawLossOffset(spec.loss, random)

  return {
    spec,
    get bytes () { return bytes },
    lossAtByte,
    admit (size, now) {
      if (bytes + size > lossAtByte) {
        bytes += size
        return 'lost'
      }
      bytes += size
      let departure = now
      if (rate !== Infinity) {
        tokens = refilledAt === -Infinity ? burst : Math.min(burst, tokens + (now - refilledAt) * rate)
        refilledAt = now
        tokens -= size
        if (tokens < 0) departure = now - tokens / rate
      }
      let delay = spec.latencyMs
      if (spec.jitterMs > 0) delay = Math.max(0, delay + spec.jitterMs * random.normal())
      lastArrival = Math.max(lastArrival, departure + delay)
      return lastArrival
    }
  }
}
