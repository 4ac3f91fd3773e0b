/**
 * A site's learner for the density-routed MoE (docs/routing.md): the site's
 * own rows, the whole MoE (its copies of the other sites' experts frozen),
 * and a plain-SGD trainer that gates every row one-hot onto the site's own
 * expert. Each local step therefore moves the trunk, the head and the site's
 * expert only. The networked runtime exchanges getShared()/setShared()
 * (trunk + head: what FedAvg averages); the expert leaves once, published.
 */
import type { Logger } from '../../coordinator/components.ts'
import { sortedTensorMap, type TensorMap } from '../../protocols/tensors.ts'
import type { BatchSource } from '../data/types.ts'
import { FederationError } from '../errors.ts'
import { createMoeModel } from '../model/moe.ts'
import type { ClassifierModel } from '../model/model.ts'
import { expertGroup, groupOf, selectParams } from '../model/params.ts'
import type { MoeSpec } from '../model/spec.ts'
import type { Learner, LocalTrainResult } from '../site/learner.ts'
import { createTrainer } from '../train/trainer.ts'
import { exchangedPart, isExchanged, RECIPE, recipeInitialParams } from './recipe.ts'

export interface MoeLearnerInit {
  spec: MoeSpec
  /** This site's expert slot (0..spec.experts-1). */
  expert: number
  /** The site's own rows. */
  data: BatchSource
  /** Default RECIPE.lr (0.1). */
  lr?: number
  /** Default RECIPE.batchSize (32). */
  batchSize?: number
  /** Starting parameters (default: the recipe's init of the spec; every site must start alike). */
  initial?: TensorMap
}

export interface MoeLearnerComponents {
  logger: Logger
}

export interface MoeLearner extends Learner {
  readonly expert: number
  /** The site's model: committed shared part, own expert, installed experts of the others. */
  readonly model: ClassifierModel
  /** Names of the parameters getShared() returns, sorted. */
  readonly sharedNames: readonly string[]
  /** Copies of this site's expert tensors (`expert.<own>.*`), what it publishes. */
  expertParams: () => TensorMap
  /** Installs another site's published expert (`expert.<id>.*`; other names are refused). */
  setExpertParams: (id: number, map: TensorMap) => void
  dispose: () => void
}

export function createMoeLearner (init: MoeLearnerInit, components: MoeLearnerComponents): MoeLearner {
  const { spec, expert, data } = init
  if (!Number.isInteger(expert) || expert < 0 || expert >= spec.experts) throw new FederationError(`expert ${expert} is not a slot of this MoE (0..${spec.experts - 1})`)
  if (data.dim !== spec.inputDim) throw new FederationError(`the site's data has ${data.dim} features, the model takes ${spec.inputDim}`)
  if (data.numClasses > spec.classes) throw new FederationError(`the site's data has ${data.numClasses} classes, the model ${spec.classes}`)
  if (data.size < 1) throw new FederationError('a site needs at least one example')
  const batchSize = init.batchSize ?? RECIPE.batchSize
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new FederationError(`batch size must be a positive integer, got ${batchSize}`)

  const model = createMoeModel(spec, init.initial ?? recipeInitialParams(spec))
  const others = Array.from({ length: spec.experts }, (_, e) => e).filter(e => e !== expert).map(expertGroup)
  const trainer = createTrainer({
    model,
    optimizer: { kind: 'sgd', lr: init.lr ?? RECIPE.lr },
    frozen: others,
    routing: { fixedExpert: expert },
    // The learned router never runs under fixed gates: no balance loss.
    auxLossWeight: 0
  }, { logger: components.logger })
  const sharedNames = model.defs.map(d => d.name).filter(isExchanged)
  let disposed = false

  const expertMap = (id: number): TensorMap => {
    const g = expertGroup(id)
    return sortedTensorMap([...model.getParams()].filter(([n]) => groupOf(n) === g))
  }

  return {
    expert,
    model,
    sharedNames,
    sampleCount: data.size,
    getShared: () => exchangedPart(model.getParams()),
    setShared: (params) => {
      const names = [...params.keys()]
      const wrong = names.filter(n => !isExchanged(n))
      if (wrong.length > 0) throw new FederationError(`setShared takes only the trunk and head (shared.trunk.*, shared.head.*), got ${wrong.slice(0, 3).join(', ')}`)
      const missing = sharedNames.filter(n => !params.has(n))
      if (missing.length > 0) throw new FederationError(`setShared is missing ${missing.join(', ')}`)
      // selectParams checks shapes and lengths against the model's definitions.
      const defs = model.defs.filter(d => isExchanged(d.name))
      selectParams(defs, params)
      const full = new Map(model.getParams())
      for (const n of names) full.set(n, params.get(n)!)
      model.setParams(full, { only: ['shared'] })
    },
    trainLocal: async (steps, options = {}): Promise<LocalTrainResult> => {
      if (disposed) throw new FederationError('learner was disposed')
      const r = await trainer.steps(data, steps, batchSize, options)
      return { samples: r.samples, loss: r.loss }
    },
    expertParams: () => expertMap(expert),
    setExpertParams: (id, map) => {
      if (!Number.isInteger(id) || id < 0 || id >= spec.experts) throw new FederationError(`expert ${id} is not a slot of this MoE (0..${spec.experts - 1})`)
      if (id === expert) throw new FederationError(`expert ${id} is this site's own expert; it is trained here, not installed`)
      const g = expertGroup(id)
      const wrong = [...map.keys()].filter(n => { try { return groupOf(n) !== g } catch { return true } })
      if (wrong.length > 0) throw new FederationError(`expert ${id} takes only expert.${id}.* tensors, got ${wrong.slice(0, 3).join(', ')}`)
      model.setParams(map, { only: [g] })
    },
    dispose: () => {
      if (disposed) return
      disposed = true
      trainer.dispose()
      model.dispose()
    }
  }
}
