/**
 * The matrix products of every model, written for the wasm backend's fast
 * path. tfjs-backend-wasm 4.22 hands a product to XNNPACK only when it is
 * unbatched and has no transpose flag; with transposeA or transposeB (or a
 * batch > 1) it runs a plain loop, 7-10x slower (docs/model.md has the
 * figures). tfjs's own matMul gradients use the flags, so most of a training
 * step's backward pass ran on the slow path.
 *
 * The ops here make their gradients explicit: on wasm a transposed operand is
 * copied first (a cheap, memory-bound transpose) and the product runs plain;
 * on other backends the flags are free and stay. They also skip gradients
 * nobody needs: the first layer's input is data, and the one-hot dispatch
 * matrices are constants. The values computed are the same products; only
 * float rounding (the order of the sums inside a kernel) can differ.
 */
import * as tf from '@tensorflow/tfjs'

/** op(a) op(b), op = transpose where asked: flags where the backend does them fast, a copy on wasm. No gradient of its own. */
export function product (a: tf.Tensor2D, b: tf.Tensor2D, transposeA = false, transposeB = false): tf.Tensor2D {
  if (!(transposeA || transposeB) || tf.getBackend() !== 'wasm') return tf.matMul(a, b, transposeA, transposeB)
  return tf.matMul(transposeA ? tf.transpose(a) : a, transposeB ? tf.transpose(b) : b)
}

type Grad = (dy: tf.Tensor2D, saved: tf.Tensor[]) => tf.Tensor[]

/**
 * A custom-gradient op over `inputs`. tfjs disposes a forward pass's
 * intermediates before the backward pass, so every tensor the gradient reads
 * (inputs included) goes through `keep` and comes back, in order, as `saved`.
 * Tensors that are not inputs get no gradient.
 */
function op (inputs: tf.Tensor[], keep: tf.Tensor[], value: () => tf.Tensor2D, grad: Grad): tf.Tensor2D {
  const f = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    (args[args.length - 1] as tf.GradSaveFunc)(keep)
    return { value: value(), gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => grad(dy, saved) }
  })
  return f(...inputs) as tf.Tensor2D
}

/**
 * y = x w + b (x: n x in, w: in x out, b: out). With inputGrad false, x gets
 * no gradient: for a first layer, whose input is data, that is a whole
 * n x in product saved per step.
 */
export function affine (x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D, inputGrad = true): tf.Tensor2D {
  const value = (): tf.Tensor2D => tf.add(product(x, w), b)
  const dw = (dy: tf.Tensor2D, xs: tf.Tensor): tf.Tensor => product(xs as tf.Tensor2D, dy, true, false)
  if (!inputGrad) return op([w, b], [x], value, (dy, [xs]) => [dw(dy, xs!), tf.sum(dy, 0)])
  return op([x, w, b], [x, w], value, (dy, [xs, ws]) => [product(dy, ws as tf.Tensor2D, false, true), dw(dy, xs!), tf.sum(dy, 0)])
}

/**
 * A constant 0/1 matrix `m` (rows x cols) and its transpose, both built on
 * the host, so that m v and m^T v, and their gradients, are plain products.
 */
export interface OneHot {
  m: tf.Tensor2D
  mT: tf.Tensor2D
}

/** m v; the gradient for v is m^T dy. */
export function applyOneHot (s: OneHot, v: tf.Tensor2D): tf.Tensor2D {
  return op([v], [s.mT], () => tf.matMul(s.m, v), (dy, [mT]) => [tf.matMul(mT as tf.Tensor2D, dy)])
}

/** m^T v; the gradient for v is m dy. */
export function applyOneHotT (s: OneHot, v: tf.Tensor2D): tf.Tensor2D {
  return op([v], [s.m], () => tf.matMul(s.mT, v), (dy, [m]) => [tf.matMul(m as tf.Tensor2D, dy)])
}
