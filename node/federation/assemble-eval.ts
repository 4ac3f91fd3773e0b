/**
 * Assembly and evaluation of the federated MoE (docs/routing.md, step 4):
 * the committed trunk and head plus every site's published expert, routed
 * by density-router gates; no retraining. Also the figures the flagship
 * reports: per-class accuracy, routing accuracy (the top gate is the expert
 * of the site that holds the row's label) and the opt-out experiment.
 */
import { gatesFromScores } from '../../coordinator/routing/router.ts'
import type { TensorMap } from '../../protocols/tensors.ts'
import type { LabeledData } from '../data/types.ts'
import { FederationError } from '../errors.ts'
import type { ClassifierModel } from '../model/model.ts'
import { expertGroup } from '../model/params.ts'
import { evaluate } from '../train/evaluate.ts'
import { isExchanged } from './recipe.ts'

/** Puts the committed shared part (trunk + head) and each slot's expert into `model`. */
export function installAssembly (model: ClassifierModel, shared: TensorMap, experts: ReadonlyArray<TensorMap>): void {
  if (experts.length !== model.experts) throw new FederationError(`assembly needs ${model.experts} experts, got ${experts.length}`)
  const full = new Map(model.getParams())
  for (const [n, t] of shared) {
    if (!isExchanged(n)) throw new FederationError(`the committed shared part holds '${n}'; only shared.trunk.* and shared.head.* are exchanged`)
    full.set(n, t)
  }
  model.setParams(full, { only: ['shared'] })
  experts.forEach((map, e) => { model.setParams(map, { only: [expertGroup(e)] }) })
}

export interface AssembledEval {
  accuracy: number
  loss: number
  perClassAccuracy: number[]
  /** Rows per class in the data. */
  classCounts: number[]
  /** Share of rows whose largest gate is on the expert holding their label; null without an owner map. */
  routingAccuracy: number | null
  n: number
}

/** The expert that holds each label (from the sites' label groups); -1 for a label nobody holds. */
export function ownerOfLabels (groups: ReadonlyArray<readonly number[]>, classes: number): Int32Array {
  const owner = new Int32Array(classes).fill(-1)
  groups.forEach((g, e) => { for (const l of g) owner[l] = e })
  return owner
}

export function classCounts (data: LabeledData): number[] {
  const c = new Array<number>(data.numClasses).fill(0)
  for (let i = 0; i < data.n; i++) c[data.y[i]!]!++
  return c
}

/** Accuracy over the rows of the given labels, from per-class accuracy and class counts. */
export function accuracyOver (perClass: readonly number[], counts: readonly number[], labels: Iterable<number>): number {
  let correct = 0
  let total = 0
  for (const l of labels) {
    if (counts[l]! === 0) continue
    correct += perClass[l]! * counts[l]!
    total += counts[l]!
  }
  return total === 0 ? NaN : correct / total
}

export function routingAccuracy (gates: Float32Array, labels: Int32Array, experts: number, owner: Int32Array): number {
  const n = labels.length
  let hit = 0
  for (let i = 0; i < n; i++) {
    let best = 0
    for (let e = 1; e < experts; e++) if (gates[i * experts + e]! > gates[i * experts + best]!) best = e
    if (best === owner[labels[i]!]) hit++
  }
  return hit / n
}

export function evaluateWithGates (model: ClassifierModel, data: LabeledData, gates: Float32Array, owner?: Int32Array): AssembledEval {
  const r = evaluate(model, data, { gates })
  return {
    accuracy: r.accuracy,
    loss: r.loss,
    perClassAccuracy: r.perClassAccuracy,
    classCounts: classCounts(data),
    routingAccuracy: owner === undefined ? null : routingAccuracy(gates, data.y, model.experts, owner),
    n: r.n
  }
}

/** Gates one-hot on one expert for every row (a site's own view, or the local-only model). */
export function fixedGates (n: number, experts: number, expert: number): Float32Array {
  const g = new Float32Array(n * experts)
  for (let i = 0; i < n; i++) g[i * experts + expert] = 1
  return g
}

/** Gates one-hot on the expert that holds each row's label: routing's upper bound. */
export function oracleGates (labels: Int32Array, experts: number, owner: Int32Array): Float32Array {
  const g = new Float32Array(labels.length * experts)
  labels.forEach((l, i) => { g[i * experts + Math.max(0, owner[l]!)] = 1 })
  return g
}

export interface OptOutResult {
  expert: number
  /** Labels the opted-out expert's site holds. */
  labels: number[]
  ownBefore: number
  ownAfter: number
  othersBefore: number
  othersAfter: number
  /** (ownBefore - ownAfter) in percentage points. */
  dropPoints: number
  /** (othersAfter - othersBefore) in points, over all rows of the other labels. */
  othersChangePoints: number
  /** Largest |change| of any single other label's accuracy, in points. */
  maxOtherLabelChangePoints: number
}

/**
 * Masks one expert (gate exactly 0, the rest renormalised over the top-k
 * allowed) and compares against the full assembly on the same data.
 */
export function optOutExperiment (
  model: ClassifierModel, data: LabeledData, scores: Float64Array, groups: ReadonlyArray<readonly number[]>,
  expert: number, options: { topK?: number, full?: AssembledEval } = {}
): OptOutResult {
  const E = model.experts
  if (!Number.isInteger(expert) || expert < 0 || expert >= E) throw new FederationError(`cannot opt out expert ${expert}: slots are 0..${E - 1}`)
  const topK = options.topK ?? 2
  const full = options.full ?? evaluateWithGates(model, data, gatesFromScores(scores, data.n, E, { topK }))
  const masked = evaluateWithGates(model, data, gatesFromScores(scores, data.n, E, { topK, optOut: new Set([expert]) }))
  const own = [...groups[expert]!]
  const others = Array.from({ length: data.numClasses }, (_, l) => l).filter(l => !own.includes(l))
  const ownBefore = accuracyOver(full.perClassAccuracy, full.classCounts, own)
  const ownAfter = accuracyOver(masked.perClassAccuracy, masked.classCounts, own)
  const othersBefore = accuracyOver(full.perClassAccuracy, full.classCounts, others)
  const othersAfter = accuracyOver(masked.perClassAccuracy, masked.classCounts, others)
  const perLabel = others.filter(l => full.classCounts[l]! > 0).map(l => Math.abs(masked.perClassAccuracy[l]! - full.perClassAccuracy[l]!))
  return {
    expert,
    labels: own,
    ownBefore,
    ownAfter,
    othersBefore,
    othersAfter,
    dropPoints: 100 * (ownBefore - ownAfter),
    othersChangePoints: 100 * (othersAfter - othersBefore),
    maxOtherLabelChangePoints: 100 * Math.max(0, ...perLabel)
  }
}
