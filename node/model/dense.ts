/**
 * The two baselines. Dense: the MoE with its routed experts replaced by one
 * residual FFN that every row uses (sized by denseSpecFor to the MoE's active
 * parameter count). MLP: a plain ReLU network; with mlp2nnSpec() it is the
 * FedAvg paper's 2NN (784-200-200-10).
 */
import * as tf from '@tensorflow/tfjs'
import type { TensorMap } from '../../protocols/tensors.ts'
import { ModelInputError } from '../errors.ts'
import { createVariableStore, gelu, mapChunks, type ClassifierModel, type ForwardResult } from './model.ts'
import { initParams, paramDefs } from './params.ts'
import type { DenseSpec, MlpSpec } from './spec.ts'

function checkInput (x: tf.Tensor2D, dim: number): void {
  if (x.rank !== 2 || x.shape[1] !== dim) throw new ModelInputError(`input must be n x ${dim}, got [${x.shape.join(', ')}]`)
}

export function createDenseModel (spec: DenseSpec, initial: TensorMap = initParams(spec)): ClassifierModel {
  const defs = paramDefs(spec)
  const store = createVariableStore(defs, initial)
  const v = (name: string): tf.Tensor2D => store.variables.get(name)! as tf.Tensor2D
  const affine = (x: tf.Tensor2D, w: string, b: string): tf.Tensor2D => tf.fused.matMul({ a: x, b: v(w), bias: v(b) }) as tf.Tensor2D
  const trunk = (x: tf.Tensor2D): tf.Tensor2D => gelu(affine(x, 'shared.trunk.w', 'shared.trunk.b')) as tf.Tensor2D

  const forward = (x: tf.Tensor2D): ForwardResult => {
    checkInput(x, spec.inputDim)
    const h = trunk(x)
    const hidden = gelu(affine(h, 'shared.ffn.w1', 'shared.ffn.b1')) as tf.Tensor2D
    const z = h.add(affine(hidden, 'shared.ffn.w2', 'shared.ffn.b2')) as tf.Tensor2D
    return { logits: affine(z, 'shared.head.w', 'shared.head.b'), aux: null, routed: null }
  }

  return {
    spec,
    inputDim: spec.inputDim,
    classes: spec.classes,
    experts: 0,
    defs,
    featureDim: spec.width,
    variables: store.variables,
    getParams: store.getParams,
    setParams: store.setParams,
    forward,
    predict: (x) => mapChunks(x, spec.inputDim, spec.classes, (chunk, _s, rows) => tf.tidy(() =>
      tf.softmax(forward(tf.tensor2d(chunk, [rows, spec.inputDim])).logits).dataSync() as Float32Array)),
    features: (x) => mapChunks(x, spec.inputDim, spec.width, (chunk, _s, rows) => tf.tidy(() =>
      trunk(tf.tensor2d(chunk, [rows, spec.inputDim])).dataSync() as Float32Array)),
    dispose: store.dispose
  }
}

export function createMlpModel (spec: MlpSpec, initial: TensorMap = initParams(spec)): ClassifierModel {
  const defs = paramDefs(spec)
  const store = createVariableStore(defs, initial)
  const layers = spec.hidden.length + 1
  const v = (name: string): tf.Tensor2D => store.variables.get(name)! as tf.Tensor2D
  const layer = (x: tf.Tensor2D, l: number, activation: 'relu' | 'linear'): tf.Tensor2D =>
    tf.fused.matMul({ a: x, b: v(`shared.layer${l}.w`), bias: v(`shared.layer${l}.b`), activation }) as tf.Tensor2D

  /** Output of the last hidden layer. */
  const hiddenOut = (x: tf.Tensor2D): tf.Tensor2D => {
    let a = x
    for (let l = 0; l + 1 < layers; l++) a = layer(a, l, 'relu')
    return a
  }
  const forward = (x: tf.Tensor2D): ForwardResult => {
    checkInput(x, spec.inputDim)
    return { logits: layer(hiddenOut(x), layers - 1, 'linear'), aux: null, routed: null }
  }
  const featureDim = spec.hidden[spec.hidden.length - 1]!

  return {
    spec,
    inputDim: spec.inputDim,
    classes: spec.classes,
    experts: 0,
    defs,
    featureDim,
    variables: store.variables,
    getParams: store.getParams,
    setParams: store.setParams,
    forward,
    predict: (x) => mapChunks(x, spec.inputDim, spec.classes, (chunk, _s, rows) => tf.tidy(() =>
      tf.softmax(forward(tf.tensor2d(chunk, [rows, spec.inputDim])).logits).dataSync() as Float32Array)),
    features: (x) => mapChunks(x, spec.inputDim, featureDim, (chunk, _s, rows) => tf.tidy(() =>
      hiddenOut(tf.tensor2d(chunk, [rows, spec.inputDim])).dataSync() as Float32Array)),
    dispose: store.dispose
  }
}
