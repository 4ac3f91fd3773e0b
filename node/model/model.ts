/**
 * What every classifier (MoE, dense baseline, MLP) offers the trainer, the
 * evaluator and the federation, and the variable store they share.
 *
 * Lifetimes: a model owns its tf.Variables until dispose(). forward() builds a
 * graph and returns tensors the caller owns (call it inside tf.tidy or a
 * gradient closure); predict() and features() take and return plain arrays.
 */
import * as tf from '@tensorflow/tfjs'
import type { TensorMap } from '../../protocols/tensors.ts'
import { sortedTensorMap } from '../../protocols/tensors.ts'
import { ModelInputError } from '../errors.ts'
import { selectParams, type ParamDef, type ParamGroup } from './params.ts'
import type { ModelSpec } from './spec.ts'

export interface ForwardOptions {
  /**
   * n x E mixing weights, row-major, replacing the learned router:
   * output = head(h + sum_e g[e] * expert_e(h)). Experts with g = 0 for a row
   * are not run on that row. Ignored by models without experts.
   */
  gates?: Float32Array
}

export interface ForwardResult {
  logits: tf.Tensor2D
  /** The Switch balance loss of the learned router; null with external gates or without experts. */
  aux: tf.Scalar | null
  /** Rows each expert ran on in this pass; null without experts. */
  routed: Int32Array | null
}

export interface SetParamsOptions {
  /** Set only these groups; the map must hold all their parameters and may hold others. */
  only?: readonly ParamGroup[]
}

export interface ClassifierModel {
  readonly spec: ModelSpec
  readonly inputDim: number
  readonly classes: number
  /** Number of experts; 0 for models without. */
  readonly experts: number
  readonly defs: readonly ParamDef[]
  /** The trainable variables by parameter name. */
  readonly variables: ReadonlyMap<string, tf.Variable>
  getParams: () => TensorMap
  setParams: (map: TensorMap, options?: SetParamsOptions) => void
  forward: (x: tf.Tensor2D, options?: ForwardOptions) => ForwardResult
  /** n x C class probabilities. */
  predict: (x: Float32Array, options?: ForwardOptions) => Float32Array
  /** The representation before the experts/FFN (MoE and dense: trunk output, n x width; MLP: last hidden layer). */
  features: (x: Float32Array) => Float32Array
  readonly featureDim: number
  dispose: () => void
}

/** Rows per tfjs call in predict/features: bounds the one-hot dispatch matrices (rows x rows). */
export const INFERENCE_CHUNK = 512

export interface VariableStore {
  readonly variables: ReadonlyMap<string, tf.Variable>
  getParams: () => TensorMap
  setParams: (map: TensorMap, options?: SetParamsOptions) => void
  dispose: () => void
}

export function createVariableStore (defs: readonly ParamDef[], initial: TensorMap): VariableStore {
  selectParams(defs, initial)
  const variables = new Map<string, tf.Variable>()
  // tidy frees the initial tensor; the variable keeps its own reference to the data.
  for (const d of defs) variables.set(d.name, tf.tidy(() => tf.variable(tf.tensor(initial.get(d.name)!.data, d.shape, 'float32'), true)))
  let disposed = false
  return {
    variables,
    getParams: () => sortedTensorMap(defs.map(d => {
      const data = variables.get(d.name)!.dataSync() as Float32Array
      return [d.name, { shape: [...d.shape], data: Float32Array.from(data) }]
    })),
    setParams: (map, options = {}) => {
      for (const name of selectParams(defs, map, options.only)) {
        const t = map.get(name)!
        const v = variables.get(name)!
        tf.tidy(() => { v.assign(tf.tensor(t.data, v.shape, 'float32')) })
      }
    },
    dispose: () => {
      if (disposed) return
      disposed = true
      for (const v of variables.values()) v.dispose()
    }
  }
}

/** Checks that a forward() input is n x dim. */
export function checkInputTensor (x: tf.Tensor2D, dim: number): void {
  if (x.rank !== 2 || x.shape[1] !== dim) throw new ModelInputError(`input must be n x ${dim}, got [${x.shape.join(', ')}]`)
}

/** Checks an n x dim input and returns n. */
export function rowsOf (x: Float32Array, dim: number, what = 'input'): number {
  if (!(x instanceof Float32Array)) throw new ModelInputError(`${what} must be a Float32Array`)
  if (x.length % dim !== 0) throw new ModelInputError(`${what} of ${x.length} values is not a whole number of rows of ${dim}`)
  return x.length / dim
}

/** Runs fn over row chunks of x and concatenates the per-row outputs. */
export function mapChunks (x: Float32Array, dim: number, outDim: number, fn: (chunk: Float32Array, start: number, rows: number) => Float32Array): Float32Array {
  const n = rowsOf(x, dim)
  const out = new Float32Array(n * outDim)
  for (let start = 0; start < n; start += INFERENCE_CHUNK) {
    const rows = Math.min(INFERENCE_CHUNK, n - start)
    out.set(fn(x.subarray(start * dim, (start + rows) * dim), start, rows), start * outDim)
  }
  return out
}

/** GELU, tanh form (GPT-2): x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)). Exact formula shared with the reference. */
export const GELU_C = 2 * Math.sqrt(2 / Math.PI)
export const GELU_A = 0.044715

/**
 * GELU with its derivative written out: d/dx x s(u) = s + x s (1 - s) u',
 * u = C (x + A x^3), u' = C (1 + 3 A x^2). One tape node instead of seven
 * chained ops, whose taped gradient took about twice the kernels. The forward
 * values are those of the plain chain, bit for bit.
 */
const geluOp = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const x = args[0] as tf.Tensor
  const s = tf.sigmoid(x.add(x.mul(x).mul(x).mul(GELU_A)).mul(GELU_C))
  ;(args[1] as tf.GradSaveFunc)([x, s])
  return {
    value: x.mul(s),
    gradFunc: (dy: tf.Tensor, [xs, ss]: tf.Tensor[]) => {
      const du = xs!.square().mul(3 * GELU_A * GELU_C).add(GELU_C)
      return dy.mul(ss!.add(xs!.mul(ss!).mul(tf.scalar(1).sub(ss!)).mul(du)))
    }
  }
})

export function gelu (x: tf.Tensor): tf.Tensor {
  return geluOp(x)
}

export interface ClassifierParts {
  spec: ModelSpec
  experts: number
  defs: readonly ParamDef[]
  store: VariableStore
  featureDim: number
  forward: ClassifierModel['forward']
  /** The representation features() returns, as a tensor (n x featureDim). */
  featuresOf: (x: tf.Tensor2D) => tf.Tensor2D
  /** Default: softmax of forward()'s logits, chunk by chunk (no options). */
  predict?: ClassifierModel['predict']
}

/** The ClassifierModel every architecture builds the same way around its store, forward and features. */
export function assembleClassifier (parts: ClassifierParts): ClassifierModel {
  const { spec, store, forward, featuresOf, featureDim } = parts
  const { inputDim, classes } = spec
  return {
    spec,
    inputDim,
    classes,
    experts: parts.experts,
    defs: parts.defs,
    featureDim,
    variables: store.variables,
    getParams: store.getParams,
    setParams: store.setParams,
    forward,
    predict: parts.predict ?? ((x) => mapChunks(x, inputDim, classes, (chunk, _start, rows) => tf.tidy(() =>
      tf.softmax(forward(tf.tensor2d(chunk, [rows, inputDim])).logits).dataSync() as Float32Array))),
    features: (x) => mapChunks(x, inputDim, featureDim, (chunk, _start, rows) => tf.tidy(() =>
      featuresOf(tf.tensor2d(chunk, [rows, inputDim])).dataSync() as Float32Array)),
    dispose: store.dispose
  }
}
