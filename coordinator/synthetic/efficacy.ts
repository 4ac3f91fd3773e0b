/**
 * ML efficacy: does a model trained on the synthetic rows predict the label
 * of held-out real rows nearly as well as the same model trained on the real
 * rows? The model is a multinomial logistic regression on one-hot
 * categoricals and standardised numerics, trained by full-batch gradient
 * descent with momentum from zero weights: no randomness at all, so the
 * figure is a property of the data, not of a seed.
 */
import { InvalidArgumentError } from '../errors.ts'
import type { Domain, RawValue } from './domain.ts'

export interface LogisticOptions {
  /** Full-batch steps; the loss is convex, 300 is well past convergence on small tables. */
  iterations?: number
  learningRate?: number
  momentum?: number
  /** L2 penalty on the weights (not the biases): keeps separable data from diverging. */
  l2?: number
}

export interface LogisticModel {
  dim: number
  classes: number
  /** classes x dim, row-major. */
  w: Float64Array
  b: Float64Array
}

export function fitLogistic (x: Float64Array, y: Int32Array, dim: number, classes: number, options: LogisticOptions = {}): LogisticModel {
  const n = y.length
  if (x.length !== n * dim) throw new InvalidArgumentError(`fitLogistic: x has ${x.length} values, expected ${n} x ${dim}`)
  const iterations = options.iterations ?? 300
  const lr = options.learningRate ?? 0.5
  const mu = options.momentum ?? 0.9
  const l2 = options.l2 ?? 1e-3
  const w = new Float64Array(classes * dim)
  const b = new Float64Array(classes)
  const vw = new Float64Array(w.length)
  const vb = new Float64Array(classes)
  const gw = new Float64Array(w.length)
  const gb = new Float64Array(classes)
  const p = new Float64Array(classes)
  for (let it = 0; it < iterations && n > 0; it++) {
    gw.fill(0)
    gb.fill(0)
    for (let r = 0; r < n; r++) {
      softmaxInto(p, w, b, x, r * dim, dim, classes)
      for (let c = 0; c < classes; c++) {
        const g = (p[c]! - (y[r] === c ? 1 : 0)) / n
        gb[c]! += g
        for (let k = 0; k < dim; k++) gw[c * dim + k]! += g * x[r * dim + k]!
      }
    }
    for (let k = 0; k < w.length; k++) {
      vw[k] = mu * vw[k]! - lr * (gw[k]! + l2 * w[k]!)
      w[k]! += vw[k]!
    }
    for (let c = 0; c < classes; c++) {
      vb[c] = mu * vb[c]! - lr * gb[c]!
      b[c]! += vb[c]!
    }
  }
  return { dim, classes, w, b }
}

function softmaxInto (p: Float64Array, w: Float64Array, b: Float64Array, x: Float64Array, off: number, dim: number, classes: number): void {
  let max = -Infinity
  for (let c = 0; c < classes; c++) {
    let z = b[c]!
    for (let k = 0; k < dim; k++) z += w[c * dim + k]! * x[off + k]!
    p[c] = z
    max = Math.max(max, z)
  }
  let s = 0
  for (let c = 0; c < classes; c++) { p[c] = Math.exp(p[c]! - max); s += p[c]! }
  for (let c = 0; c < classes; c++) p[c]! /= s
}

export function predictLogistic (model: LogisticModel, x: Float64Array): Int32Array {
  const n = x.length / model.dim
  const out = new Int32Array(n)
  const p = new Float64Array(model.classes)
  for (let r = 0; r < n; r++) {
    softmaxInto(p, model.w, model.b, x, r * model.dim, model.dim, model.classes)
    let best = 0
    for (let c = 1; c < model.classes; c++) if (p[c]! > p[best]!) best = c
    out[r] = best
  }
  return out
}

/** Feature matrix and labels of raw rows; numerics standardised with the given training rows' statistics. */
export interface FeatureEncoder {
  dim: number
  encode: (rows: readonly (readonly RawValue[])[]) => { x: Float64Array, y: Int32Array }
}

export function createFeatureEncoder (domain: Domain, label: number, training: readonly (readonly RawValue[])[]): FeatureEncoder {
  const labelCol = domain.columns[label]
  if (labelCol?.kind !== 'categorical') throw new InvalidArgumentError(`ML efficacy needs a categorical label column, got ${labelCol === undefined ? 'none' : `'${labelCol.name}' (${labelCol.kind})`}`)
  const labelIndex = new Map(labelCol.categories.map((c, i) => [c, i]))
  const parts = domain.columns.map((c, j) => {
    if (j === label) return { width: 0, fill: () => {} }
    if (c.kind === 'categorical') {
      const index = new Map(c.categories.map((v, i) => [v, i]))
      return { width: c.categories.length, fill: (v: RawValue, out: Float64Array, off: number) => { const k = index.get(String(v)); if (k !== undefined) out[off + k] = 1 } }
    }
    let mean = 0
    let sq = 0
    for (const row of training) mean += Number(row[j])
    mean /= Math.max(1, training.length)
    for (const row of training) sq += (Number(row[j]) - mean) ** 2
    const std = Math.sqrt(sq / Math.max(1, training.length)) || 1
    return { width: 1, fill: (v: RawValue, out: Float64Array, off: number) => { out[off] = (Number(v) - mean) / std } }
  })
  const dim = parts.reduce((s, p) => s + p.width, 0)
  return {
    dim,
    encode: (rows) => {
      const x = new Float64Array(rows.length * dim)
      const y = new Int32Array(rows.length)
      rows.forEach((row, r) => {
        let off = r * dim
        parts.forEach((p, j) => { p.fill(row[j]!, x, off); off += p.width })
        y[r] = labelIndex.get(String(row[label])) ?? -1
      })
      return { x, y }
    }
  }
}

export interface EfficacyResult {
  label: string
  model: 'multinomial-logistic'
  /** Accuracy on the holdout of a model trained on the real training rows. */
  realAccuracy: number
  /** Accuracy on the same holdout of a model trained on the synthetic rows. */
  syntheticAccuracy: number
  /** syntheticAccuracy / realAccuracy. */
  ratio: number
}

export function mlEfficacy (domain: Domain, label: number, train: readonly (readonly RawValue[])[], synthetic: readonly (readonly RawValue[])[], holdout: readonly (readonly RawValue[])[], options?: LogisticOptions): EfficacyResult {
  if (holdout.length === 0) throw new InvalidArgumentError('ML efficacy needs a non-empty holdout')
  const accuracyOf = (training: readonly (readonly RawValue[])[]): number => {
    const enc = createFeatureEncoder(domain, label, training)
    const t = enc.encode(training)
    const classes = (domain.columns[label] as { categories: string[] }).categories.length
    const model = fitLogistic(t.x, t.y, enc.dim, classes, options)
    const h = enc.encode(holdout)
    const pred = predictLogistic(model, h.x)
    let right = 0
    for (let r = 0; r < pred.length; r++) if (pred[r] === h.y[r]) right++
    return right / pred.length
  }
  const realAccuracy = accuracyOf(train)
  const syntheticAccuracy = accuracyOf(synthetic)
  return { label: domain.columns[label]!.name, model: 'multinomial-logistic', realAccuracy, syntheticAccuracy, ratio: realAccuracy > 0 ? syntheticAccuracy / realAccuracy : 0 }
}
