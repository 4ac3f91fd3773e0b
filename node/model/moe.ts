/**
 * The MoE classifier in tfjs: h = GELU(x Wt + bt); router probabilities
 * p = softmax(h Wr + br); top-k gates; z = h + sum_e g_e * FFN_e(h) (residual,
 * FFN_e = GELU(h W1 + b1) W2 + b2); logits = z Wh + bh.
 *
 * Dispatch trains on the wasm backend, which lacks gradients for gather and
 * TopK (STACK.md): the top-k choice is made in plain JS from the router's
 * probabilities (it is piecewise constant, so it has no gradient anyway), and
 * rows move to and from each expert by multiplying with constant one-hot
 * matrices, whose gradients are plain matmuls. Only the rows routed to an
 * expert run through it.
 */
import * as tf from '@tensorflow/tfjs'
import { ModelInputError } from '../errors.ts'
import { createVariableStore, gelu, mapChunks, rowsOf, type ClassifierModel, type ForwardOptions, type ForwardResult } from './model.ts'
import { initParams, paramDefs } from './params.ts'
import type { MoeSpec } from './spec.ts'
import type { TensorMap } from '../../protocols/tensors.ts'

export interface Routes {
  /** n x E gate mask (1 where the expert is among the row's top k). */
  mask: Float32Array
  /** For each expert, the rows routed to it, ascending. */
  rows: Int32Array[]
}

/** Top-k of each row of n x E probabilities; ties go to the lower expert index. */
export function topKRoutes (probs: ArrayLike<number>, n: number, experts: number, k: number): Routes {
  const mask = new Float32Array(n * experts)
  const lists: number[][] = Array.from({ length: experts }, () => [])
  for (let i = 0; i < n; i++) {
    const base = i * experts
    let first = 0
    for (let e = 1; e < experts; e++) if (probs[base + e]! > probs[base + first]!) first = e
    mask[base + first] = 1
    if (k === 2) {
      let second = first === 0 ? 1 : 0
      for (let e = 0; e < experts; e++) if (e !== first && probs[base + e]! > probs[base + second]!) second = e
      mask[base + second] = 1
    }
  }
  for (let i = 0; i < n; i++) for (let e = 0; e < experts; e++) if (mask[i * experts + e] !== 0) lists[e]!.push(i)
  return { mask, rows: lists.map(l => Int32Array.from(l)) }
}

/** Rows with a nonzero gate, per expert; checks size and finiteness. */
export function gateRoutes (gates: Float32Array, n: number, experts: number): Int32Array[] {
  if (!(gates instanceof Float32Array)) throw new ModelInputError('gates must be a Float32Array (n x experts, row-major)')
  if (gates.length !== n * experts) throw new ModelInputError(`gates hold ${gates.length} values, expected ${n} rows x ${experts} experts = ${n * experts}`)
  const lists: number[][] = Array.from({ length: experts }, () => [])
  for (let i = 0; i < n; i++) {
    for (let e = 0; e < experts; e++) {
      const g = gates[i * experts + e]!
      if (!Number.isFinite(g)) throw new ModelInputError(`gate of row ${i}, expert ${e} is ${g}`)
      if (g !== 0) lists[e]!.push(i)
    }
  }
  return lists.map(l => Int32Array.from(l))
}

/** rows.length x n one-hot selection matrix: S h picks the rows, S^T y puts them back. */
function selection (rows: Int32Array, n: number): tf.Tensor2D {
  const s = new Float32Array(rows.length * n)
  for (let j = 0; j < rows.length; j++) s[j * n + rows[j]!] = 1
  return tf.tensor2d(s, [rows.length, n])
}

export function createMoeModel (spec: MoeSpec, initial: TensorMap = initParams(spec)): ClassifierModel {
  const defs = paramDefs(spec)
  const store = createVariableStore(defs, initial)
  const v = (name: string): tf.Variable => store.variables.get(name)!
  const E = spec.experts

  const trunk = (x: tf.Tensor2D): tf.Tensor2D => gelu(tf.matMul(x, v('shared.trunk.w')).add(v('shared.trunk.b'))) as tf.Tensor2D

  const forward = (x: tf.Tensor2D, options: ForwardOptions = {}): ForwardResult => {
    if (x.rank !== 2 || x.shape[1] !== spec.inputDim) throw new ModelInputError(`input must be n x ${spec.inputDim}, got [${x.shape.join(', ')}]`)
    const n = x.shape[0]
    const h = trunk(x)
    let gates: tf.Tensor2D
    let rows: Int32Array[]
    let aux: tf.Scalar | null = null
    if (options.gates !== undefined) {
      rows = gateRoutes(options.gates, n, E)
      gates = tf.tensor2d(options.gates, [n, E])
    } else {
      const probs = tf.softmax(tf.matMul(h, v('shared.router.w')).add(v('shared.router.b'))) as tf.Tensor2D
      const routes = topKRoutes(probs.dataSync(), n, E, spec.topK)
      rows = routes.rows
      const masked = probs.mul(tf.tensor2d(routes.mask, [n, E]))
      gates = (spec.topK === 1 ? masked : masked.div(masked.sum(1, true))) as tf.Tensor2D
      // Switch balance loss E * sum_e f_e * P_e: f_e, the share of routing slots
      // expert e got, is a constant; P_e, its mean probability, carries the gradient.
      const share = tf.tensor1d(rows.map(r => r.length / (n * spec.topK)))
      aux = share.mul(probs.mean(0)).sum().mul(E) as tf.Scalar
    }
    const parts: tf.Tensor2D[] = [h]
    for (let e = 0; e < E; e++) {
      const r = rows[e]!
      if (r.length === 0) continue
      const sel = selection(r, n)
      const he = tf.matMul(sel, h)
      const hidden = gelu(tf.matMul(he, v(`expert.${e}.w1`)).add(v(`expert.${e}.b1`)))
      const y = tf.matMul(hidden as tf.Tensor2D, v(`expert.${e}.w2`)).add(v(`expert.${e}.b2`))
      const g = tf.matMul(sel, tf.slice(gates, [0, e], [n, 1]))
      parts.push(tf.matMul(sel, y.mul(g) as tf.Tensor2D, true, false))
    }
    const z = parts.length === 1 ? h : tf.addN(parts)
    const logits = tf.matMul(z, v('shared.head.w')).add(v('shared.head.b')) as tf.Tensor2D
    return { logits, aux, routed: Int32Array.from(rows, r => r.length) }
  }

  const model: ClassifierModel = {
    spec,
    inputDim: spec.inputDim,
    classes: spec.classes,
    experts: E,
    defs,
    featureDim: spec.width,
    variables: store.variables,
    getParams: store.getParams,
    setParams: store.setParams,
    forward,
    predict: (x, options = {}) => {
      const n = rowsOf(x, spec.inputDim)
      if (options.gates !== undefined && options.gates.length !== n * E) gateRoutes(options.gates, n, E)
      return mapChunks(x, spec.inputDim, spec.classes, (chunk, start, rows) => tf.tidy(() => {
        const gates = options.gates?.subarray(start * E, (start + rows) * E)
        const { logits } = forward(tf.tensor2d(chunk, [rows, spec.inputDim]), gates === undefined ? {} : { gates })
        return tf.softmax(logits).dataSync() as Float32Array
      }))
    },
    features: (x) => mapChunks(x, spec.inputDim, spec.width, (chunk, _start, rows) => tf.tidy(() =>
      trunk(tf.tensor2d(chunk, [rows, spec.inputDim])).dataSync() as Float32Array)),
    dispose: store.dispose
  }
  return model
}
