/**
 * Evaluation on held-out data: mean cross-entropy, accuracy, accuracy per
 * class and, for a model with experts, how many rows each expert ran on.
 */
import * as tf from '@tensorflow/tfjs'
import { ModelInputError } from '../errors.ts'
import type { LabeledData } from '../data/types.ts'
import { INFERENCE_CHUNK, type ClassifierModel } from '../model/model.ts'
import { checkLabels } from './loss.ts'

export interface EvalResult {
  loss: number
  accuracy: number
  /** Accuracy over the rows of each true class; NaN for a class with no rows. */
  perClassAccuracy: number[]
  /** Per expert, the rows it ran on (top-k routes or nonzero gates); sums to n * k. Absent without experts. */
  routingHistogram?: number[]
  n: number
}

export interface EvalOptions {
  /** n x E external gates in place of the learned router. */
  gates?: Float32Array
}

export function evaluate (model: ClassifierModel, data: LabeledData, options: EvalOptions = {}): EvalResult {
  const { n, dim } = data
  if (dim !== model.inputDim) throw new ModelInputError(`data has ${dim} features, the model takes ${model.inputDim}`)
  if (data.x.length !== n * dim) throw new ModelInputError(`data holds ${data.x.length} values, expected ${n} x ${dim}`)
  if (n === 0) throw new ModelInputError('cannot evaluate on zero rows')
  checkLabels(data.y, n, model.classes)
  const E = model.experts
  if (options.gates !== undefined && options.gates.length !== n * E) throw new ModelInputError(`gates hold ${options.gates.length} values, expected ${n} rows x ${E} experts = ${n * E}`)

  const C = model.classes
  let lossSum = 0
  let correct = 0
  const perClass = new Float64Array(C)
  const perClassN = new Float64Array(C)
  const histogram = new Array<number>(E).fill(0)
  for (let start = 0; start < n; start += INFERENCE_CHUNK) {
    const rows = Math.min(INFERENCE_CHUNK, n - start)
    const gates = options.gates?.subarray(start * E, (start + rows) * E)
    let routed: Int32Array | null = null
    const logp = tf.tidy(() => {
      const out = model.forward(tf.tensor2d(data.x.subarray(start * dim, (start + rows) * dim), [rows, dim]), gates === undefined ? {} : { gates })
      routed = out.routed
      return tf.logSoftmax(out.logits)
    })
    const lp = logp.dataSync() as Float32Array
    logp.dispose()
    if (routed !== null) for (let e = 0; e < E; e++) histogram[e]! += (routed as Int32Array)[e]!
    for (let i = 0; i < rows; i++) {
      const label = data.y[start + i]!
      let best = 0
      for (let c = 1; c < C; c++) if (lp[i * C + c]! > lp[i * C + best]!) best = c
      lossSum -= lp[i * C + label]!
      perClassN[label]!++
      if (best === label) { correct++; perClass[label]!++ }
    }
  }
  const result: EvalResult = {
    loss: lossSum / n,
    accuracy: correct / n,
    perClassAccuracy: Array.from(perClass, (c, k) => (perClassN[k]! === 0 ? NaN : c / perClassN[k]!)),
    n
  }
  if (E > 0) result.routingHistogram = histogram
  return result
}
