/**
 * Parameter names, shapes, groups and seeded initial values for every model
 * kind. Pure (no tfjs): the reference, the coordinator's assembly and the
 * artifact code all agree on these names.
 *
 * Names: `shared.trunk.w`, `shared.router.w`, `shared.head.b`, ... for what all
 * sites train together; `expert.<i>.w1|b1|w2|b2` for expert i, which one site
 * owns. Weights are stored [in, out] (y = x W + b).
 */
import { createSeededRandom } from '../../coordinator/components.ts'
import { elementCount, sortedTensorMap, type Tensor, type TensorMap } from '../../protocols/tensors.ts'
import { ParamMismatchError } from '../errors.ts'
import type { DenseSpec, MlpSpec, ModelSpec, MoeSpec } from './spec.ts'

export type ParamGroup = 'shared' | `expert:${number}`

export interface ParamDef {
  name: string
  shape: number[]
  /** Standard deviation of the normal initial values; 0 means zeros. */
  std: number
}

const EXPERT_RE = /^expert\.(0|[1-9]\d*)\./

/** The group a parameter belongs to, from its name's prefix. */
export function groupOf (name: string): ParamGroup {
  if (name.startsWith('shared.')) return 'shared'
  const m = EXPERT_RE.exec(name)
  if (m !== null) return `expert:${Number(m[1])}`
  throw new ParamMismatchError(`parameter name '${name}' is neither shared.* nor expert.<i>.*`)
}

export function expertGroup (i: number): ParamGroup {
  return `expert:${i}`
}

// He init for layers feeding GELU/ReLU, LeCun for linear outputs.
const he = (fanIn: number): number => Math.sqrt(2 / fanIn)
const lecun = (fanIn: number): number => Math.sqrt(1 / fanIn)

function linear (prefix: string, inDim: number, outDim: number, std: number, w = 'w', b = 'b'): ParamDef[] {
  return [{ name: `${prefix}.${w}`, shape: [inDim, outDim], std }, { name: `${prefix}.${b}`, shape: [outDim], std: 0 }]
}

function moeDefs (s: MoeSpec): ParamDef[] {
  const defs = [
    ...linear('shared.trunk', s.inputDim, s.width, he(s.inputDim)),
    ...linear('shared.router', s.width, s.experts, s.routerInitScale * lecun(s.width)),
    ...linear('shared.head', s.width, s.classes, lecun(s.width))
  ]
  for (let i = 0; i < s.experts; i++) {
    defs.push(...linear(`expert.${i}`, s.width, s.expertHidden, he(s.width), 'w1', 'b1'))
    defs.push(...linear(`expert.${i}`, s.expertHidden, s.width, lecun(s.expertHidden), 'w2', 'b2'))
  }
  return defs
}

function denseDefs (s: DenseSpec): ParamDef[] {
  return [
    ...linear('shared.trunk', s.inputDim, s.width, he(s.inputDim)),
    ...linear('shared.ffn', s.width, s.hidden, he(s.width), 'w1', 'b1'),
    ...linear('shared.ffn', s.hidden, s.width, lecun(s.hidden), 'w2', 'b2'),
    ...linear('shared.head', s.width, s.classes, lecun(s.width))
  ]
}

function mlpDefs (s: MlpSpec): ParamDef[] {
  const sizes = [s.inputDim, ...s.hidden, s.classes]
  const defs: ParamDef[] = []
  for (let l = 0; l + 1 < sizes.length; l++) {
    const last = l + 2 === sizes.length
    defs.push(...linear(`shared.layer${l}`, sizes[l]!, sizes[l + 1]!, last ? lecun(sizes[l]!) : he(sizes[l]!)))
  }
  return defs
}

/** Every parameter of a model, sorted by name. */
export function paramDefs (spec: ModelSpec): ParamDef[] {
  const defs = spec.kind === 'moe' ? moeDefs(spec) : spec.kind === 'dense' ? denseDefs(spec) : mlpDefs(spec)
  return defs.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}

/** Initial parameters, fully determined by the spec (its seed and each name). */
export function initParams (spec: ModelSpec): TensorMap {
  const root = createSeededRandom(spec.seed)
  return sortedTensorMap(paramDefs(spec).map(d => {
    const data = new Float32Array(elementCount(d.shape))
    if (d.std > 0) {
      const r = root.fork(d.name)
      for (let i = 0; i < data.length; i++) data[i] = r.normal() * d.std
    }
    return [d.name, { shape: [...d.shape], data }]
  }))
}

/** All parameters, and those one example touches (the MoE uses k of its E experts). */
export function paramCounts (spec: ModelSpec): { total: number, active: number } {
  let total = 0
  let expert = 0
  for (const d of paramDefs(spec)) {
    const n = elementCount(d.shape)
    total += n
    if (d.name.startsWith('expert.')) expert += n
  }
  if (spec.kind !== 'moe') return { total, active: total }
  return { total, active: total - expert + (expert / spec.experts) * spec.topK }
}

/** A dense baseline with (nearly) the same active parameter count as `moe`. */
export function denseSpecFor (moe: MoeSpec): DenseSpec {
  const { width: d, experts: e, topK: k, expertHidden: f } = moe
  // Dense FFN 2dh+h+d must cover the router (dE+E) plus k experts k(2df+f+d).
  const hidden = Math.max(1, Math.round((d * e + e + k * (2 * d * f + f + d) - d) / (2 * d + 1)))
  return { kind: 'dense', inputDim: moe.inputDim, width: d, hidden, classes: moe.classes, seed: moe.seed }
}

/**
 * Checks `map` against the definitions: with `only`, every parameter of those
 * groups must be present (others are ignored); without, the names must match
 * exactly. Shapes and lengths must match. Returns the names to set.
 */
export function selectParams (defs: readonly ParamDef[], map: TensorMap, only?: readonly ParamGroup[]): string[] {
  const wanted = only === undefined ? defs : defs.filter(d => only.includes(groupOf(d.name)))
  if (only !== undefined) {
    const known = new Set(defs.map(d => groupOf(d.name)))
    const unknown = only.filter(g => !known.has(g))
    if (unknown.length > 0) throw new ParamMismatchError(`no parameter group ${unknown.join(', ')} in this model`)
  } else {
    const names = new Set(defs.map(d => d.name))
    const extra = [...map.keys()].filter(n => !names.has(n))
    if (extra.length > 0) throw new ParamMismatchError(`unknown parameter(s) ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', ...' : ''}`)
  }
  for (const d of wanted) {
    const t: Tensor | undefined = map.get(d.name)
    if (t === undefined) throw new ParamMismatchError(`missing parameter '${d.name}'`)
    if (t.shape.length !== d.shape.length || t.shape.some((v, i) => v !== d.shape[i])) {
      throw new ParamMismatchError(`parameter '${d.name}' has shape [${t.shape.join(', ')}], the model needs [${d.shape.join(', ')}]`)
    }
    if (t.data.length !== elementCount(d.shape)) throw new ParamMismatchError(`parameter '${d.name}' holds ${t.data.length} values, shape [${d.shape.join(', ')}] needs ${elementCount(d.shape)}`)
  }
  return wanted.map(d => d.name)
}
