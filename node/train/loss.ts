/**
 * The training objective: mean cross-entropy, plus a weighted balance loss
 * for a learned router. Shared by the trainer, the evaluator and the tests
 * that hold tfjs gradients to finite differences of the reference.
 */
import * as tf from '@tensorflow/tfjs'
import { ModelInputError } from '../errors.ts'

/** Checks labels against the class count (before any tensor is built). */
export function checkLabels (y: Int32Array, n: number, classes: number): void {
  if (!(y instanceof Int32Array) || y.length !== n) throw new ModelInputError(`expected ${n} labels in an Int32Array, got ${y instanceof Int32Array ? y.length : typeof y}`)
  for (let i = 0; i < n; i++) {
    const c = y[i]!
    if (c < 0 || c >= classes) throw new ModelInputError(`label ${c} of row ${i} is outside [0, ${classes})`)
  }
}

/** Mean over rows of -log softmax(logits)[label]. */
export function crossEntropy (logits: tf.Tensor2D, y: Int32Array): tf.Scalar {
  const classes = logits.shape[1]
  const onehot = tf.oneHot(tf.tensor1d(y, 'int32'), classes)
  return tf.logSoftmax(logits).mul(onehot).sum(1).mean().neg() as tf.Scalar
}
