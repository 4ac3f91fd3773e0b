/**
 * Turning noisy measurements into one consistent set of marginals.
 *
 * MST proper runs Private-PGM for this. On a tree, consistency has a simpler
 * shape that we solve directly: (1) every column's 1-way marginal is the
 * inverse-variance weighted mean of its own measurement and the margins of
 * the 2-way measurements that touch it, projected onto the non-negative
 * histograms with the estimated total; (2) every edge's 2-way table is the
 * least-squares correction of its measurement onto those margins, clipped at
 * zero and raked (iterative proportional fitting) back onto the margins.
 * Adjacent tables then agree on their shared column, which is all that
 * sampling along the tree needs. Everything here is post-processing of
 * already-paid measurements: it costs no privacy.
 */

/**
 * Euclidean projection of v onto { x >= 0, sum x = total } (sort-based, as in
 * Duchi et al. 2008): subtract the one threshold that makes the positive part sum to total.
 */
export function projectSimplex (v: Float64Array, total: number): Float64Array {
  const out = new Float64Array(v.length)
  if (total <= 0 || v.length === 0) return out
  const sorted = Array.from(v).sort((a, b) => b - a)
  let cum = 0
  let theta = 0
  for (let k = 0; k < sorted.length; k++) {
    cum += sorted[k]!
    const t = (cum - total) / (k + 1)
    if (sorted[k]! - t > 0) theta = t
  }
  for (let k = 0; k < v.length; k++) out[k] = Math.max(0, v[k]! - theta)
  return out
}

/** A measurement and the variance of each of its cells. */
export interface Measured {
  values: Float64Array
  variance: number
}

/** Inverse-variance weighted estimate of the row count from the totals of several measurements. */
export function estimateTotal (measurements: readonly Measured[]): number {
  let num = 0
  let den = 0
  for (const m of measurements) {
    let s = 0
    for (const x of m.values) s += x
    // The sum of k independent noisy cells has variance k * variance.
    const w = 1 / (m.values.length * m.variance)
    num += w * s
    den += w
  }
  return Math.max(1, num / den)
}

/** Row sums (axis 0: margin of the first column) or column sums (axis 1) of a rows x cols table. */
export function marginOf (table: Float64Array, rows: number, cols: number, axis: 0 | 1): Float64Array {
  const out = new Float64Array(axis === 0 ? rows : cols)
  for (let a = 0; a < rows; a++) {
    for (let b = 0; b < cols; b++) out[axis === 0 ? a : b]! += table[a * cols + b]!
  }
  return out
}

/** Inverse-variance weighted mean of estimates of the same 1-way marginal, projected onto the simplex. */
export function combineOneWay (estimates: readonly Measured[], total: number): Float64Array {
  const size = estimates[0]!.values.length
  const mean = new Float64Array(size)
  let den = 0
  for (const e of estimates) {
    const w = 1 / e.variance
    den += w
    for (let k = 0; k < size; k++) mean[k]! += w * e.values[k]!
  }
  for (let k = 0; k < size; k++) mean[k]! /= den
  return projectSimplex(mean, total)
}

/**
 * A non-negative rows x cols table with margins `rowTarget` and `colTarget`
 * (both summing to the same total), as close as we can cheaply get to the
 * noisy `table`.
 */
export function fitTwoWay (table: Float64Array, rowTarget: Float64Array, colTarget: Float64Array, maxIterations = 200): Float64Array {
  const rows = rowTarget.length
  const cols = colTarget.length
  let total = 0
  for (const x of rowTarget) total += x
  // Least-squares projection onto the affine set of tables with these margins.
  const rowSum = marginOf(table, rows, cols, 0)
  const colSum = marginOf(table, rows, cols, 1)
  let s = 0
  for (const x of table) s += x
  const out = new Float64Array(rows * cols)
  for (let a = 0; a < rows; a++) {
    for (let b = 0; b < cols; b++) {
      const v = table[a * cols + b]! + (rowTarget[a]! - rowSum[a]!) / cols + (colTarget[b]! - colSum[b]!) / rows - (total - s) / (rows * cols)
      out[a * cols + b] = Math.max(0, v)
    }
  }
  // Rake onto the margins; a row or column with nothing left but a positive
  // target is refilled in proportion to the other margin (independence).
  const tolerance = 1e-9 * Math.max(1, total)
  for (let it = 0; it < maxIterations; it++) {
    scaleToMargin(out, rows, cols, 0, rowTarget, colTarget, total)
    scaleToMargin(out, rows, cols, 1, colTarget, rowTarget, total)
    const r = marginOf(out, rows, cols, 0)
    let worst = 0
    for (let a = 0; a < rows; a++) worst = Math.max(worst, Math.abs(r[a]! - rowTarget[a]!))
    if (worst < tolerance) break
  }
  return out
}

function scaleToMargin (t: Float64Array, rows: number, cols: number, axis: 0 | 1, target: Float64Array, other: Float64Array, total: number): void {
  const current = marginOf(t, rows, cols, axis)
  const n = axis === 0 ? rows : cols
  const m = axis === 0 ? cols : rows
  for (let k = 0; k < n; k++) {
    const have = current[k]!
    const want = target[k]!
    for (let l = 0; l < m; l++) {
      const idx = axis === 0 ? k * cols + l : l * cols + k
      if (have > 0) t[idx] = t[idx]! * want / have
      else t[idx] = total > 0 ? want * other[l]! / total : 0
    }
  }
}
