/**
 * The MoE classifier in tfjs: h = GELU(x Wt + bt); router probabilities
 * p = softmax(h Wr + br); top-k gates; z = h + sum_e g_e * FFN_e(h) (residual,
 * FFN_e = GELU(h W1 + b1) W2 + b2); logits = z Wh + bh.
 *
 * Dispatch trains on the wasm backend, which lacks gradients for gather and
 * TopK (STACK.md): the top-k choice is made in plain JS from the router's
 * probabilities (it is piecewise constant, so it has no gradient anyway), and
 * rows move to and from the experts by multiplying with a constant one-hot
 * matrix, whose gradients are plain matmuls. Only the rows routed to an
 * expert run through it.
 */
import * as tf from '@tensorflow/tfjs'
import { ModelInputError } from '../errors.ts'
import { affine, applyOneHot, applyOneHotT, type OneHot } from './linear.ts'
import { assembleClassifier, checkInputTensor, createVariableStore, gelu, mapChunks, rowsOf, type ClassifierModel, type ForwardOptions, type ForwardResult } from './model.ts'
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

/**
 * The routing slots of a pass: every (row, expert) pair that runs, grouped by
 * expert. `select` (slots x n) picks each slot's row: select h gathers the
 * experts' inputs, select^T y scatters their outputs back (both matrices are
 * built here, so no product needs a transpose); `owner` (slots x E)
 * marks each slot's expert, to read each slot's gate out of select g.
 */
function slotsOf (rows: Int32Array[], n: number, experts: number): { select: OneHot, owner: tf.Tensor2D, total: number } {
  const total = rows.reduce((s, r) => s + r.length, 0)
  const select = new Float32Array(total * n)
  const selectT = new Float32Array(n * total)
  const owner = new Float32Array(total * experts)
  let slot = 0
  for (let e = 0; e < experts; e++) {
    for (const row of rows[e]!) {
      select[slot * n + row] = 1
      selectT[row * total + slot] = 1
      owner[slot * experts + e] = 1
      slot++
    }
  }
  return { select: { m: tf.tensor2d(select, [total, n]), mT: tf.tensor2d(selectT, [n, total]) }, owner: tf.tensor2d(owner, [total, experts]), total }
}

export function createMoeModel (spec: MoeSpec, initial: TensorMap = initParams(spec)): ClassifierModel {
  const defs = paramDefs(spec)
  const store = createVariableStore(defs, initial)
  const v = (name: string): tf.Tensor2D => store.variables.get(name)! as tf.Tensor2D
  const E = spec.experts

  const b = (name: string): tf.Tensor1D => store.variables.get(name)! as tf.Tensor1D
  // The input is data: no gradient for it.
  const trunk = (x: tf.Tensor2D): tf.Tensor2D => gelu(affine(x, v('shared.trunk.w'), b('shared.trunk.b'), false)) as tf.Tensor2D

  const forward = (x: tf.Tensor2D, options: ForwardOptions = {}): ForwardResult => {
    checkInputTensor(x, spec.inputDim)
    const n = x.shape[0]
    const h = trunk(x)
    let gates: tf.Tensor2D
    let rows: Int32Array[]
    let aux: tf.Scalar | null = null
    if (options.gates !== undefined) {
      rows = gateRoutes(options.gates, n, E)
      gates = tf.tensor2d(options.gates, [n, E])
    } else {
      const probs = tf.softmax(affine(h, v('shared.router.w'), b('shared.router.b')))
      const routes = topKRoutes(probs.dataSync(), n, E, spec.topK)
      rows = routes.rows
      const masked = probs.mul(tf.tensor2d(routes.mask, [n, E]))
      gates = (spec.topK === 1 ? masked : masked.div(masked.sum(1, true))) as tf.Tensor2D
      // Switch balance loss E * sum_e f_e * P_e: f_e, the share of routing slots
      // expert e got, is a constant; P_e, its mean probability, carries the gradient.
      const share = tf.tensor1d(rows.map(r => r.length / (n * spec.topK)))
      aux = share.mul(probs.mean(0)).sum().mul(E) as tf.Scalar
    }
    // All experts' rows in one gather and one scatter; each expert runs on its contiguous block.
    const { select, owner, total } = slotsOf(rows, n, E)
    let z = h
    if (total > 0) {
      const hs = applyOneHot(select, h)
      const gs = applyOneHot(select, gates).mul(owner).sum(1, true)
      const outs: tf.Tensor2D[] = []
      let offset = 0
      for (let e = 0; e < E; e++) {
        const count = rows[e]!.length
        if (count === 0) continue
        const he = tf.slice(hs, [offset, 0], [count, spec.width])
        const hidden = gelu(affine(he, v(`expert.${e}.w1`), b(`expert.${e}.b1`))) as tf.Tensor2D
        outs.push(affine(hidden, v(`expert.${e}.w2`), b(`expert.${e}.b2`)))
        offset += count
      }
      const ys = outs.length === 1 ? outs[0]! : tf.concat(outs, 0)
      z = h.add(applyOneHotT(select, ys.mul(gs) as tf.Tensor2D)) as tf.Tensor2D
    }
    const logits = affine(z, v('shared.head.w'), b('shared.head.b'))
    return { logits, aux, routed: Int32Array.from(rows, r => r.length) }
  }

  return assembleClassifier({
    spec,
    experts: E,
    defs,
    store,
    featureDim: spec.width,
    forward,
    featuresOf: trunk,
    // With external gates: each chunk gets its rows' slice of them.
    predict: (x, options = {}) => {
      const n = rowsOf(x, spec.inputDim)
      // Checked whole here; each chunk's slice is checked again in forward().
      if (options.gates !== undefined && options.gates.length !== n * E) throw new ModelInputError(`gates hold ${options.gates.length} values, expected ${n} rows x ${E} experts = ${n * E}`)
      return mapChunks(x, spec.inputDim, spec.classes, (chunk, start, rows) => tf.tidy(() => {
        const gates = options.gates?.subarray(start * E, (start + rows) * E)
        const { logits } = forward(tf.tensor2d(chunk, [rows, spec.inputDim]), gates === undefined ? {} : { gates })
        return tf.softmax(logits).dataSync() as Float32Array
      }))
    }
  })
}
