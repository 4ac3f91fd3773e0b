/**
 * The two baselines. Dense: the MoE with its routed experts replaced by one
 * residual FFN that every row uses (sized by denseSpecFor to the MoE's active
 * parameter count). MLP: a plain ReLU network; with mlp2nnSpec() it is the
 * FedAvg paper's 2NN (784-200-200-10).
 */
import * as tf from '@tensorflow/tfjs'
import type { TensorMap } from '../../protocols/tensors.ts'
import { affine } from './linear.ts'
import { assembleClassifier, checkInputTensor, createVariableStore, gelu, type ClassifierModel, type ForwardResult } from './model.ts'
import { initParams, paramDefs } from './params.ts'
import type { DenseSpec, MlpSpec } from './spec.ts'

export function createDenseModel (spec: DenseSpec, initial: TensorMap = initParams(spec)): ClassifierModel {
  const defs = paramDefs(spec)
  const store = createVariableStore(defs, initial)
  const v = (name: string): tf.Tensor2D => store.variables.get(name)! as tf.Tensor2D
  const layer = (x: tf.Tensor2D, w: string, b: string, inputGrad = true): tf.Tensor2D => affine(x, v(w), v(b) as tf.Tensor as tf.Tensor1D, inputGrad)
  // The input is data: no gradient for it.
  const trunk = (x: tf.Tensor2D): tf.Tensor2D => gelu(layer(x, 'shared.trunk.w', 'shared.trunk.b', false)) as tf.Tensor2D

  const forward = (x: tf.Tensor2D): ForwardResult => {
    checkInputTensor(x, spec.inputDim)
    const h = trunk(x)
    const hidden = gelu(layer(h, 'shared.ffn.w1', 'shared.ffn.b1')) as tf.Tensor2D
    const z = h.add(layer(hidden, 'shared.ffn.w2', 'shared.ffn.b2')) as tf.Tensor2D
    return { logits: layer(z, 'shared.head.w', 'shared.head.b'), aux: null, routed: null }
  }

  return assembleClassifier({ spec, experts: 0, defs, store, featureDim: spec.width, forward, featuresOf: trunk })
}

export function createMlpModel (spec: MlpSpec, initial: TensorMap = initParams(spec)): ClassifierModel {
  const defs = paramDefs(spec)
  const store = createVariableStore(defs, initial)
  const layers = spec.hidden.length + 1
  const v = (name: string): tf.Tensor2D => store.variables.get(name)! as tf.Tensor2D
  const layer = (x: tf.Tensor2D, l: number, activation: 'relu' | 'linear'): tf.Tensor2D => {
    // Layer 0's input is data: no gradient for it.
    const y = affine(x, v(`shared.layer${l}.w`), v(`shared.layer${l}.b`) as tf.Tensor as tf.Tensor1D, l > 0)
    return activation === 'relu' ? tf.relu(y) : y
  }

  /** Output of the last hidden layer. */
  const hiddenOut = (x: tf.Tensor2D): tf.Tensor2D => {
    let a = x
    for (let l = 0; l + 1 < layers; l++) a = layer(a, l, 'relu')
    return a
  }
  const forward = (x: tf.Tensor2D): ForwardResult => {
    checkInputTensor(x, spec.inputDim)
    return { logits: layer(hiddenOut(x), layers - 1, 'linear'), aux: null, routed: null }
  }
  return assembleClassifier({ spec, experts: 0, defs, store, featureDim: spec.hidden[spec.hidden.length - 1]!, forward, featuresOf: hiddenOut })
}
