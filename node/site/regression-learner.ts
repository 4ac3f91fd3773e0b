/**
 * A Learner for linear regression on a site's own rows: one shared tensor
 * `w` (the weights, bias last if the data carries a ones column), trained by
 * full-batch gradient descent on the mean squared error in float64. With one
 * local step per round and FedAvg weighting by samples, a federation of
 * these is exactly gradient descent on the pooled loss, so it has a
 * closed-form answer to check against (the pooled least-squares optimum).
 * Deterministic: the same rows and parameters give the same bits.
 */
import type { TensorMap } from '../../protocols/tensors.ts'
import { ConfigError } from '../errors.ts'
import type { Learner } from './learner.ts'

export interface RegressionLearnerInit {
  /** Row-major features, n x dim. */
  x: Float64Array
  y: Float64Array
  dim: number
  /** Local gradient-descent step size. */
  lr: number
  /** Initial weights (default zeros): every member of a federation must start from the same. */
  initial?: Float32Array
}

export function createRegressionLearner (init: RegressionLearnerInit): Learner {
  const { x, y, dim, lr } = init
  const n = y.length
  if (!Number.isInteger(dim) || dim < 1) throw new ConfigError(`regression learner needs dim >= 1, got ${dim}`)
  if (n < 1 || x.length !== n * dim) throw new ConfigError(`regression learner needs ${n} x ${dim} features, got ${x.length} values`)
  if (!(lr > 0) || !Number.isFinite(lr)) throw new ConfigError(`regression learner needs a positive finite lr, got ${lr}`)
  let w = Float64Array.from(init.initial ?? new Float32Array(dim))
  if (w.length !== dim) throw new ConfigError(`initial weights have ${w.length} values, dim is ${dim}`)
  const grad = new Float64Array(dim)

  const loss = (): number => {
    let total = 0
    for (let i = 0; i < n; i++) {
      let err = -y[i]!
      for (let j = 0; j < dim; j++) err += x[i * dim + j]! * w[j]!
      total += err * err
    }
    return total / n
  }

  return {
    sampleCount: n,
    getShared: (): TensorMap => new Map([['w', { shape: [dim], data: Float32Array.from(w) }]]),
    setShared: (params) => {
      const t = params.get('w')
      if (t === undefined || t.data.length !== dim || params.size !== 1) throw new ConfigError(`regression learner takes one tensor 'w' of ${dim} values`)
      w = Float64Array.from(t.data)
    },
    trainLocal: async (steps, options = {}) => {
      let total = 0
      for (let s = 0; s < steps; s++) {
        options.signal?.throwIfAborted()
        grad.fill(0)
        for (let i = 0; i < n; i++) {
          let err = -y[i]!
          for (let j = 0; j < dim; j++) err += x[i * dim + j]! * w[j]!
          for (let j = 0; j < dim; j++) grad[j]! += 2 * err * x[i * dim + j]! / n
        }
        total += loss()
        for (let j = 0; j < dim; j++) w[j]! -= lr * grad[j]!
      }
      return { samples: n * steps, loss: steps === 0 ? loss() : total / steps }
    }
  }
}
