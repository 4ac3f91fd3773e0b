/**
 * Local training for one site: H steps of an optimizer over batches from a
 * BatchSource, with frozen parameter groups, an optional FedProx proximal
 * term, the router's balance loss, and routing that the federation can
 * override (a site trains its own expert on its own data by routing every
 * row to it). Optimizer state persists across steps() calls.
 */
import * as tf from '@tensorflow/tfjs'
import type { Logger } from '../../coordinator/components.ts'
import type { TensorMap } from '../../protocols/tensors.ts'
import type { Batch, BatchSource } from '../data/types.ts'
import { TrainerError } from '../errors.ts'
import type { ClassifierModel } from '../model/model.ts'
import { groupOf, selectParams, type ParamGroup } from '../model/params.ts'
import { checkLabels, crossEntropy } from './loss.ts'
import { createOptimizer, type OptimizerConfigInput } from './optimizers.ts'

export { evaluate, type EvalResult, type EvalOptions } from './evaluate.ts'

export type Routing = 'learned' | { fixedExpert: number } | { gates: (batch: Batch) => Float32Array }

export interface TrainerInit {
  model: ClassifierModel
  optimizer: OptimizerConfigInput
  /** Groups whose parameters do not move (e.g. a site's copies of other sites' experts). */
  frozen?: readonly ParamGroup[]
  /** FedProx mu: adds mu/2 * ||w - anchor||^2 once setProxAnchor() was called. Default 0. */
  proxMu?: number
  /** Weight of the Switch balance loss; 0.01 as in the Switch Transformer. */
  auxLossWeight?: number
  /** Default 'learned' (the model's top-k router). */
  routing?: Routing
}

export interface TrainProgress {
  /** Step within this steps() call, 1-based. */
  step: number
  steps: number
  /** Steps over this trainer's life. */
  totalSteps: number
  /** This step's mean cross-entropy. */
  loss: number
  samples: number
}

export interface TrainerComponents {
  logger: Logger
  onProgress?: (p: TrainProgress) => void
}

export interface StepsResult {
  /** Mean cross-entropy over the steps (without balance or proximal terms). */
  loss: number
  /** Mean balance loss, null when the learned router was not used. */
  auxLoss: number | null
  samples: number
  steps: number
  /** Rows each expert ran on, summed over the steps; null without experts. */
  routed: number[] | null
}

export interface Trainer {
  steps: (source: BatchSource, steps: number, batchSize: number, options?: { signal?: AbortSignal }) => Promise<StepsResult>
  /** Anchor of the FedProx term (typically the round's start parameters); null removes it. */
  setProxAnchor: (map: TensorMap | null) => void
  readonly totalSteps: number
  dispose: () => void
}

export function createTrainer (init: TrainerInit, components: TrainerComponents): Trainer {
  const { model } = init
  const log = components.logger
  const frozen = new Set(init.frozen ?? [])
  const groups = new Set(model.defs.map(d => groupOf(d.name)))
  for (const g of frozen) if (!groups.has(g)) throw new TrainerError(`cannot freeze group ${g}: the model has ${[...groups].join(', ')}`)
  const trainable = model.defs.map(d => d.name).filter(n => !frozen.has(groupOf(n)))
  if (trainable.length === 0) throw new TrainerError('every parameter group is frozen: nothing to train')
  const proxMu = init.proxMu ?? 0
  if (!(proxMu >= 0 && Number.isFinite(proxMu))) throw new TrainerError(`proxMu must be a finite number >= 0, got ${proxMu}`)
  const auxWeight = init.auxLossWeight ?? 0.01
  if (!(auxWeight >= 0 && Number.isFinite(auxWeight))) throw new TrainerError(`auxLossWeight must be a finite number >= 0, got ${auxWeight}`)
  const routing = init.routing ?? 'learned'
  if (routing !== 'learned' && model.experts === 0) throw new TrainerError('routing can only be overridden for a model with experts')
  if (typeof routing === 'object' && 'fixedExpert' in routing) {
    const e = routing.fixedExpert
    if (!Number.isInteger(e) || e < 0 || e >= model.experts) throw new TrainerError(`fixedExpert ${e} is not an expert of this model (0..${model.experts - 1})`)
  }

  const optimizer = createOptimizer(init.optimizer)
  const vars = trainable.map(n => model.variables.get(n)!)
  let anchor = new Map<string, tf.Tensor>()
  let totalSteps = 0
  let disposed = false

  const gatesFor = (batch: Batch): Float32Array | undefined => {
    if (routing === 'learned') return undefined
    if ('gates' in routing) return routing.gates(batch)
    const g = new Float32Array(batch.size * model.experts)
    for (let i = 0; i < batch.size; i++) g[i * model.experts + routing.fixedExpert] = 1
    return g
  }

  /** One optimizer step; returns the batch's cross-entropy and balance loss. */
  const step = (batch: Batch, routed: number[] | null): { ce: number, aux: number | null } => {
    let ce = NaN
    let aux: number | null = null
    const gates = gatesFor(batch)
    tf.tidy(() => {
      const x = tf.tensor2d(batch.x, [batch.size, model.inputDim])
      const { grads } = tf.variableGrads(() => {
        const out = model.forward(x, gates === undefined ? {} : { gates })
        const loss = crossEntropy(out.logits, batch.y)
        ce = loss.dataSync()[0]!
        if (out.routed !== null && routed !== null) for (let e = 0; e < routed.length; e++) routed[e]! += out.routed[e]!
        if (out.aux === null) return loss
        aux = out.aux.dataSync()[0]!
        return auxWeight === 0 ? loss : loss.add(out.aux.mul(auxWeight)) as tf.Scalar
      }, vars)
      const updates = []
      for (let i = 0; i < vars.length; i++) {
        let g = grads[vars[i]!.name]
        if (g === undefined) continue
        const a = anchor.get(trainable[i]!)
        // FedProx: the gradient of mu/2 ||w - w0||^2 is mu (w - w0).
        if (a !== undefined && proxMu > 0) g = g.add(vars[i]!.sub(a).mul(proxMu))
        updates.push({ name: trainable[i]!, variable: vars[i]!, grad: g })
      }
      optimizer.apply(updates)
    })
    return { ce, aux }
  }

  return {
    get totalSteps () { return totalSteps },
    steps: async (source, steps, batchSize, options = {}) => {
      if (disposed) throw new TrainerError('trainer was disposed')
      if (!Number.isInteger(steps) || steps < 0) throw new TrainerError(`steps must be a non-negative integer, got ${steps}`)
      if (!Number.isInteger(batchSize) || batchSize < 1) throw new TrainerError(`batch size must be a positive integer, got ${batchSize}`)
      if (source.dim !== model.inputDim) throw new TrainerError(`the source has ${source.dim} features, the model takes ${model.inputDim}`)
      const routed = model.experts > 0 ? new Array<number>(model.experts).fill(0) : null
      let ceSum = 0
      let auxSum = 0
      let auxCount = 0
      let samples = 0
      for (let s = 1; s <= steps; s++) {
        options.signal?.throwIfAborted()
        const batch = source.next(batchSize)
        checkLabels(batch.y, batch.size, model.classes)
        const { ce, aux } = step(batch, routed)
        if (!Number.isFinite(ce)) throw new TrainerError(`loss became ${ce} at step ${totalSteps + 1}: lower the learning rate`)
        ceSum += ce
        if (aux !== null) { auxSum += aux; auxCount++ }
        samples += batch.size
        totalSteps++
        components.onProgress?.({ step: s, steps, totalSteps, loss: ce, samples })
        // Let the node's other work (network, timers, abort) run between steps.
        await new Promise<void>(resolve => { setImmediate(resolve) })
      }
      const result: StepsResult = { loss: steps === 0 ? NaN : ceSum / steps, auxLoss: auxCount === 0 ? null : auxSum / auxCount, samples, steps, routed }
      log.debug('local steps done', { steps, samples, loss: result.loss, totalSteps })
      return result
    },
    setProxAnchor: (map) => {
      for (const t of anchor.values()) t.dispose()
      anchor = new Map()
      if (map === null) return
      selectParams(model.defs, map, [...groups].filter(g => !frozen.has(g)))
      for (const name of trainable) {
        const t = map.get(name)!
        anchor.set(name, tf.tensor(t.data, t.shape, 'float32'))
      }
    },
    dispose: () => {
      if (disposed) return
      disposed = true
      optimizer.dispose()
      for (const t of anchor.values()) t.dispose()
      anchor.clear()
    }
  }
}
