/**
 * Helpers shared by the strategies: input checks, a deterministic weighted
 * mean, and an exact JSON form for float32 vectors kept in strategy state.
 */
import { InvalidUpdatesError, StrategyConfigError } from '../errors.ts'
import type { SiteUpdate } from './types.ts'

/**
 * Checks the updates against the global vector and returns them sorted by
 * site id, so every strategy is independent of arrival order (bit-identical
 * replays) and ties break the same way on every member.
 */
export function checkUpdates (updates: readonly SiteUpdate[], global: Float32Array): SiteUpdate[] {
  if (updates.length === 0) throw new InvalidUpdatesError('no updates to aggregate')
  checkFinite(global, 'global vector')
  const seen = new Set<string>()
  for (const u of updates) {
    if (seen.has(u.site)) throw new InvalidUpdatesError(`site '${u.site}' sent more than one update`)
    seen.add(u.site)
    if (u.delta.length !== global.length) throw new InvalidUpdatesError(`update from '${u.site}' has ${u.delta.length} values, the global vector ${global.length}`)
    if (!Number.isInteger(u.samples) || u.samples <= 0) throw new InvalidUpdatesError(`update from '${u.site}' has samples=${u.samples}; expected a positive integer`)
    checkFinite(u.delta, `update from '${u.site}'`)
  }
  return [...updates].sort((a, b) => (a.site < b.site ? -1 : a.site > b.site ? 1 : 0))
}

function checkFinite (v: Float32Array, what: string): void {
  for (let i = 0; i < v.length; i++) {
    if (!Number.isFinite(v[i])) throw new InvalidUpdatesError(`${what} has a non-finite value at index ${i}`)
  }
}

/** Sample-weighted mean of the deltas, accumulated in float64 in site order. */
export function weightedMean (sorted: readonly SiteUpdate[]): Float64Array {
  const n = sorted[0]!.delta.length
  const acc = new Float64Array(n)
  let total = 0
  for (const u of sorted) total += u.samples
  for (const u of sorted) {
    const w = u.samples / total
    const d = u.delta
    for (let i = 0; i < n; i++) acc[i]! += w * d[i]!
  }
  return acc
}

/** next = global - lr * step, rounded once to float32. */
export function applyStep (global: Float32Array, step: ArrayLike<number>, lr: number): Float32Array {
  const next = new Float32Array(global.length)
  for (let i = 0; i < global.length; i++) next[i] = global[i]! - lr * step[i]!
  return next
}

/** Float32 vector -> base64 of its little-endian bytes: exact, and ~4x smaller than a JSON number list. */
export function encodeVector (v: Float32Array): string {
  const le = new Float32Array(v)
  return Buffer.from(le.buffer, le.byteOffset, le.byteLength).toString('base64')
}

export function decodeVector (s: string, expectedLength: number, what: string): Float32Array {
  const bytes = Buffer.from(s, 'base64')
  if (bytes.length !== expectedLength * 4) throw new StrategyConfigError(`strategy state '${what}' holds ${bytes.length} bytes, expected ${expectedLength * 4} for ${expectedLength} values`)
  const out = new Float32Array(expectedLength)
  new Uint8Array(out.buffer).set(bytes)
  return out
}
