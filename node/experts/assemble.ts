/**
 * Assembly: the MoE any member builds from the committed shared parameters
 * and the verified experts it may use. Absent, withdrawn and opted-out slots
 * are masked in the router (gate exactly 0, the rest renormalised), so they
 * never run; nothing is retrained. Routing is pluggable (`router`); the
 * default is the learned router in the shared parameters, optionally with the
 * router rows the sites shipped in their artifacts (FlexOlmo-style merge).
 */
import { elementCount, sortedTensorMap, type TensorMap } from '../../protocols/tensors.ts'
import { AssemblyError, ParamMismatchError } from '../errors.ts'
import { createModel } from '../model/create.ts'
import type { ClassifierModel } from '../model/model.ts'
import { groupOf, paramDefs } from '../model/params.ts'
import { parseMoeSpec, type MoeSpec } from '../model/spec.ts'
import type { ExpertManifest, VerifiedArtifact } from './artifact.ts'
import { defaultSelection, learnedRouter, selectGates, type ExpertRouter, type GateSelection, type RouterFactory } from './gates.ts'

export interface ExpertSlot {
  slot: number
  /** The expert id; what opt-out, `exclude` and attribution name. */
  id: string
  /** The owning site's peer id. */
  owner: string
  /** The artifact's address. */
  hash: string
  manifest: ExpertManifest
}

export interface AssembleInput {
  spec: MoeSpec
  /** The committed shared parameters (`shared.*`; other names are ignored). */
  shared: TensorMap
  /** Verified artifacts; for one expert, the highest version is used. */
  experts: readonly VerifiedArtifact[]
  /** Expert ids to mask. */
  optOut?: readonly string[]
  /** Default: the learned router of the shared parameters. */
  router?: RouterFactory
  /** 'artifacts': replace each present slot's router column with its artifact's `router.row.w` / `router.row.b`. Default 'shared'. */
  routerRows?: 'shared' | 'artifacts'
  selection?: Partial<GateSelection>
  /** Router tensors read back from an export. */
  savedRouter?: TensorMap
}

export interface AssembledMoe {
  readonly spec: MoeSpec
  readonly model: ClassifierModel
  /** Per slot, the expert in it (undefined: absent or withdrawn). */
  readonly slots: ReadonlyArray<ExpertSlot | undefined>
  /** Per slot, 1 when the expert may be used (present and not opted out). */
  readonly mask: Uint8Array
  readonly optedOut: readonly string[]
  readonly router: ExpertRouter
  readonly selection: GateSelection
  /** The usable mask with `exclude` (expert ids) also masked; an unknown id throws AssemblyError. */
  maskFor: (exclude?: readonly string[]) => Uint8Array
  /** n x E gates for n input rows. */
  gates: (x: Float32Array, options?: { exclude?: readonly string[] }) => Float32Array
  /** n x C probabilities and the n x E gates that produced them. */
  predict: (x: Float32Array, options?: { exclude?: readonly string[] }) => { probabilities: Float32Array, gates: Float32Array }
  dispose: () => void
}

/** One artifact per slot: the latest version of one expert; two experts on one slot is an error. */
function placeExperts (spec: MoeSpec, experts: readonly VerifiedArtifact[]): Array<VerifiedArtifact | undefined> {
  const slots: Array<VerifiedArtifact | undefined> = new Array(spec.experts).fill(undefined)
  const ids = new Map<string, string>()
  for (const a of experts) {
    const m = a.manifest
    if (m.slot >= spec.experts) throw new AssemblyError(`expert '${m.expertId}' sits in slot ${m.slot}; the spec has ${spec.experts} slots`)
    const owner = ids.get(m.expertId)
    if (owner !== undefined && owner !== m.siteId) throw new AssemblyError(`expert id '${m.expertId}' is used by two sites (${owner} and ${m.siteId}); ids must be unique`)
    ids.set(m.expertId, m.siteId)
    const held = slots[m.slot]
    if (held === undefined) { slots[m.slot] = a; continue }
    if (held.manifest.siteId !== m.siteId || held.manifest.expertId !== m.expertId) {
      throw new AssemblyError(`slot ${m.slot} is claimed by '${held.manifest.expertId}' of ${held.manifest.siteId} and '${m.expertId}' of ${m.siteId}`)
    }
    if (m.version > held.manifest.version) slots[m.slot] = a
  }
  return slots
}

/** Full model parameters: the shared ones, each present expert's, zeros for an absent slot (it is masked and never runs). */
function modelParams (spec: MoeSpec, shared: TensorMap, placed: ReadonlyArray<VerifiedArtifact | undefined>, rows: 'shared' | 'artifacts'): TensorMap {
  const out: TensorMap = new Map()
  for (const d of paramDefs(spec)) {
    const group = groupOf(d.name)
    if (group === 'shared') {
      const t = shared.get(d.name)
      if (t === undefined) throw new ParamMismatchError(`the shared parameters lack '${d.name}'`)
      out.set(d.name, { shape: [...t.shape], data: Float32Array.from(t.data) })
      continue
    }
    const artifact = placed[Number(group.slice('expert:'.length))]
    const t = artifact?.weights.get(d.name)
    out.set(d.name, t === undefined ? { shape: [...d.shape], data: new Float32Array(elementCount(d.shape)) } : { shape: [...t.shape], data: t.data })
  }
  if (rows === 'artifacts') mergeRouterRows(spec, out, placed)
  return sortedTensorMap(out)
}

function mergeRouterRows (spec: MoeSpec, params: TensorMap, placed: ReadonlyArray<VerifiedArtifact | undefined>): void {
  const w = params.get('shared.router.w')!
  const b = params.get('shared.router.b')!
  const E = spec.experts
  placed.forEach((a, slot) => {
    if (a === undefined) return
    const rw = a.router.get('router.row.w')
    const rb = a.router.get('router.row.b')
    if (rw === undefined || rb === undefined) throw new AssemblyError(`expert '${a.manifest.expertId}' carries no router row (router.row.w, router.row.b)`)
    if (rw.data.length !== spec.width || rb.data.length !== 1) throw new AssemblyError(`expert '${a.manifest.expertId}' has a router row of ${rw.data.length}+${rb.data.length} values; the spec needs ${spec.width}+1`)
    for (let k = 0; k < spec.width; k++) w.data[k * E + slot] = rw.data[k]!
    b.data[slot] = rb.data[0]!
  })
}

export function assembleMoe (input: AssembleInput): AssembledMoe {
  const spec = parseMoeSpec(input.spec)
  const placed = placeExperts(spec, input.experts)
  return assembleFromParams({
    spec,
    params: modelParams(spec, input.shared, placed, input.routerRows ?? 'shared'),
    slots: placed.map((a, slot) => a === undefined
      ? undefined
      : { slot, id: a.manifest.expertId, owner: a.manifest.siteId, hash: a.hash, manifest: a.manifest }),
    expertRouters: placed.map(a => a?.router ?? new Map()),
    optOut: input.optOut,
    router: input.router,
    selection: input.selection,
    savedRouter: input.savedRouter
  })
}

export interface AssembleFromParamsInput {
  spec: MoeSpec
  /** Every model parameter (absent slots' values are never used). */
  params: TensorMap
  slots: ReadonlyArray<ExpertSlot | undefined>
  expertRouters?: readonly TensorMap[]
  optOut?: readonly string[] | undefined
  router?: RouterFactory | undefined
  selection?: Partial<GateSelection> | undefined
  savedRouter?: TensorMap | undefined
}

/** The lower half of assembly, shared with loading an export: a model from full parameters plus the slot table. */
export function assembleFromParams (input: AssembleFromParamsInput): AssembledMoe {
  const { spec, params, slots } = input
  const E = spec.experts
  if (slots.length !== E) throw new AssemblyError(`${slots.length} slots given for ${E} experts`)
  const optedOut = [...new Set(input.optOut ?? [])]
  const mask = Uint8Array.from(slots, s => (s !== undefined && !optedOut.includes(s.id) ? 1 : 0))
  const selection: GateSelection = { ...defaultSelection(spec), ...input.selection }
  if (selection.topK !== 'all' && !(Number.isInteger(selection.topK) && selection.topK >= 1)) throw new AssemblyError(`topK must be a positive integer or 'all', got ${selection.topK}`)
  const shared = sortedTensorMap([...params].filter(([name]) => name.startsWith('shared.')))
  const router = (input.router ?? learnedRouter)({
    spec,
    shared,
    experts: input.expertRouters ?? slots.map(() => new Map()),
    saved: input.savedRouter ?? new Map()
  })
  const model = createModel(spec, params)

  const maskFor = (exclude: readonly string[] = []): Uint8Array => {
    const out = Uint8Array.from(mask)
    for (const id of exclude) {
      const s = slots.find(x => x?.id === id)
      if (s === undefined) throw new AssemblyError(`unknown expert '${id}'; this model has ${slots.filter(x => x !== undefined).map(x => `'${x.id}'`).join(', ') || 'no experts'}`)
      out[s.slot] = 0
    }
    return out
  }
  const gates: AssembledMoe['gates'] = (x, options = {}) => {
    const m = maskFor(options.exclude)
    const h = model.features(x)
    const n = h.length / spec.width
    return selectGates(router.scores(h, n, x), n, E, m, selection)
  }
  return {
    spec,
    model,
    slots,
    mask,
    optedOut,
    router,
    selection,
    maskFor,
    gates,
    predict: (x, options = {}) => {
      const g = gates(x, options)
      return { probabilities: model.predict(x, { gates: g }), gates: g }
    },
    dispose: () => { model.dispose() }
  }
}
