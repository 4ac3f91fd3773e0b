/**
 * A plain-TypeScript softmax regression (multinomial logistic regression):
 * the smallest model on which federated rounds over MNIST show something
 * real, fast enough for a unit test. Parameters are one flat vector, W
 * (dim x classes, row-major) then b (classes), the layout strategies expect.
 */
import { createSeededRandom } from '../../coordinator/components.ts'
import type { LabeledData } from '../../node/data/types.ts'

export function paramCount (dim: number, classes: number): number {
  return dim * classes + classes
}

function logits (p: Float32Array, x: Float32Array, off: number, dim: number, classes: number, out: Float64Array): void {
  const bOff = dim * classes
  for (let c = 0; c < classes; c++) out[c] = p[bOff + c]!
  for (let j = 0; j < dim; j++) {
    const v = x[off + j]!
    if (v === 0) continue
    const row = j * classes
    for (let c = 0; c < classes; c++) out[c]! += v * p[row + c]!
  }
}

/** SGD steps on the rows `indices` of `data`; returns delta = start - local. */
export function localDelta (global: Float32Array, data: LabeledData, indices: Int32Array, options: { steps: number, batch: number, lr: number, seed: string }): Float32Array {
  const { dim, numClasses: classes } = data
  const p = Float32Array.from(global)
  const rng = createSeededRandom(options.seed)
  const z = new Float64Array(classes)
  const grad = new Float64Array(p.length)
  for (let s = 0; s < options.steps; s++) {
    grad.fill(0)
    for (let b = 0; b < options.batch; b++) {
      const row = indices[rng.int(indices.length)]!
      const off = row * dim
      logits(p, data.x, off, dim, classes, z)
      let max = -Infinity
      for (let c = 0; c < classes; c++) max = Math.max(max, z[c]!)
      let sum = 0
      for (let c = 0; c < classes; c++) { z[c] = Math.exp(z[c]! - max); sum += z[c]! }
      const y = data.y[row]!
      for (let c = 0; c < classes; c++) {
        const g = z[c]! / sum - (c === y ? 1 : 0)
        grad[dim * classes + c]! += g
        for (let j = 0; j < dim; j++) {
          const v = data.x[off + j]!
          if (v !== 0) grad[j * classes + c]! += g * v
        }
      }
    }
    for (let i = 0; i < p.length; i++) p[i] = p[i]! - options.lr * grad[i]! / options.batch
  }
  return Float32Array.from(global, (g, i) => g - p[i]!)
}

export function accuracy (params: Float32Array, data: LabeledData): number {
  const { dim, numClasses: classes } = data
  const z = new Float64Array(classes)
  let right = 0
  for (let i = 0; i < data.n; i++) {
    logits(params, data.x, i * dim, dim, classes, z)
    let best = 0
    for (let c = 1; c < classes; c++) if (z[c]! > z[best]!) best = c
    if (best === data.y[i]) right++
  }
  return right / data.n
}
