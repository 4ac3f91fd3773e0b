/**
 * The constants and the model of the density-routed federated MoE
 * (docs/routing.md, "The recipe"): one expert per site, d = f = 64, trained
 * R rounds x H = 10 plain-SGD steps (lr 0.1, batch 32) with each site's rows
 * gated one-hot onto its own expert; only the trunk and the head are averaged.
 */
import { sortedTensorMap, type TensorMap } from '../../protocols/tensors.ts'
import { FederationError } from '../errors.ts'
import { initParams } from '../model/params.ts'
import { parseMoeSpec, type DenseSpec, type MoeSpec } from '../model/spec.ts'

export interface RecipeSettings {
  /** Trunk width d. 64 reaches 97 % in numpy; wider only costs bytes per round. */
  width: number
  /** Expert hidden size f. */
  expertHidden: number
  /** Local steps per round (H). */
  localSteps: number
  batchSize: number
  /** Plain SGD: no optimizer state to carry between rounds or to average. */
  lr: number
  /** Experts mixed per row at assembly; top-2 hedges borderline images (top-1 within 0.05 pt). */
  topK: 1 | 2
}

export const RECIPE: RecipeSettings = { width: 64, expertHidden: 64, localSteps: 10, batchSize: 32, lr: 0.1, topK: 2 }

/** The MoE spec of a federation of `experts` sites. */
export function recipeSpec (o: { inputDim: number, classes: number, experts: number, seed: number, width?: number, expertHidden?: number, topK?: 1 | 2 }): MoeSpec {
  const topK = Math.min(o.topK ?? RECIPE.topK, o.experts) as 1 | 2
  return parseMoeSpec({ inputDim: o.inputDim, width: o.width ?? RECIPE.width, expertHidden: o.expertHidden ?? RECIPE.expertHidden, experts: o.experts, topK, classes: o.classes, seed: o.seed })
}

/**
 * The recipe's initial values: He-normal everywhere (the model's default uses
 * LeCun for linear outputs), and each residual FFN's second layer scaled by
 * 0.1, so every expert starts close to the identity. Rescaling the model's
 * seeded draws keeps this a pure function of the spec.
 */
export function recipeInitialParams (spec: MoeSpec | DenseSpec): TensorMap {
  const base = initParams(spec)
  // The model draws these with LeCun std sqrt(1/fanIn); He is sqrt(2) times that.
  const scale = (name: string): number => {
    if (/^expert\.\d+\.w2$/.test(name) || name === 'shared.ffn.w2') return 0.1 * Math.SQRT2
    if (name === 'shared.head.w') return Math.SQRT2
    return 1
  }
  return sortedTensorMap([...base].map(([name, t]) => {
    const s = scale(name)
    return [name, s === 1 ? t : { shape: t.shape, data: t.data.map(v => v * s) }]
  }))
}

/** The parameters FedAvg averages in the recipe: trunk and head. The learned router is never used (density routing replaces it), so it is not sent. */
export function isExchanged (name: string): boolean {
  return name.startsWith('shared.trunk.') || name.startsWith('shared.head.')
}

/** `map` restricted to the exchanged names, in sorted order, as copies. */
export function exchangedPart (map: TensorMap): TensorMap {
  return sortedTensorMap([...map].filter(([n]) => isExchanged(n)).map(([n, t]) => [n, { shape: [...t.shape], data: t.data.slice() }]))
}

/** Label groups of the pathological split: site s holds labels {perSite·s, ..., perSite·s + perSite − 1}. */
export function labelGroups (sites: number, perSite: number): number[][] {
  if (!Number.isInteger(sites) || sites < 1 || !Number.isInteger(perSite) || perSite < 1) throw new FederationError(`label groups need positive integer sites and labels per site, got ${sites} and ${perSite}`)
  return Array.from({ length: sites }, (_, s) => Array.from({ length: perSite }, (_, j) => s * perSite + j))
}
