/**
 * Top-k sparsification: keep the k entries of largest magnitude. The
 * threshold is found with a quickselect over a copy of |x| (O(n), no full
 * sort), then indices are collected in ascending order; ties at the
 * threshold go to the lower index, so the choice is deterministic.
 */
import { InvalidArgumentError } from '../errors.ts'

/** k for a fraction of n: at least one entry, at most n. */
export function topkCount (n: number, fraction: number): number {
  if (!(fraction > 0 && fraction <= 1)) throw new InvalidArgumentError(`top-k fraction must be in (0, 1], got ${fraction}`)
  return Math.min(n, Math.max(1, Math.ceil(n * fraction)))
}

/** Indices of the k largest |x|, ascending. */
export function selectTopK (x: Float32Array, k: number): Uint32Array {
  const n = x.length
  if (!Number.isInteger(k) || k < 0 || k > n) throw new InvalidArgumentError(`top-k needs 0 <= k <= ${n}, got ${k}`)
  const out = new Uint32Array(k)
  if (k === 0) return out
  const abs = new Float32Array(n)
  for (let i = 0; i < n; i++) abs[i] = Math.abs(x[i]!)
  const threshold = kthLargest(abs, k)
  // Everything strictly above the threshold is in; ties fill what is left, lowest index first.
  let above = 0
  for (let i = 0; i < n; i++) if (Math.abs(x[i]!) > threshold) above++
  let ties = k - above
  let j = 0
  for (let i = 0; i < n && j < k; i++) {
    const a = Math.abs(x[i]!)
    if (a > threshold) out[j++] = i
    else if (a === threshold && ties > 0) {
      out[j++] = i
      ties--
    }
  }
  return out
}

/** The k-th largest value of `a` (1-based), found in place by Hoare quickselect. */
function kthLargest (a: Float32Array, k: number): number {
  const target = a.length - k // k-th largest is the (n-k)-th smallest, 0-based
  let lo = 0
  let hi = a.length - 1
  while (lo < hi) {
    const pivot = a[(lo + hi) >>> 1]!
    let i = lo
    let j = hi
    while (i <= j) {
      while (a[i]! < pivot) i++
      while (a[j]! > pivot) j--
      if (i <= j) {
        const t = a[i]!
        a[i] = a[j]!
        a[j] = t
        i++
        j--
      }
    }
    if (target <= j) hi = j
    else if (target >= i) lo = i
    else return a[target]!
  }
  return a[target]!
}
