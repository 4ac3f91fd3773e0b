/**
 * Export of an assembled MoE: `model.safetensors` (every model parameter in
 * float32, plus the router's own tensors as `router.*`) and `manifest.json`
 * (architecture, experts with their artifact hashes, owners, signed manifests
 * and metrics, masked slots, routing). Loading checks the weights file
 * against the manifest's sha256 and rebuilds the same model bit for bit.
 * Opted-out experts are not exported: their slots hold zeros and stay masked.
 */
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import type { Clock } from '../../coordinator/components.ts'
import { ExpertManifest, Hex64, SignatureText } from '../../protocols/experts-announce/records.ts'
import { decodeSafetensors, encodeSafetensors } from '../../protocols/safetensors/index.ts'
import { sortedTensorMap, type TensorMap } from '../../protocols/tensors.ts'
import { ExportFormatError, ParamMismatchError } from '../errors.ts'
import { SPEC_HASH_KEY, SPEC_KEY } from '../model/create.ts'
import { paramDefs } from '../model/params.ts'
import { canonicalJson, parseMoeSpec, specHash, type MoeSpec } from '../model/spec.ts'
import { sha256Hex } from '../store.ts'
import { describe } from './artifact.ts'
import { assembleFromParams, type AssembledMoe, type ExpertSlot } from './assemble.ts'
import type { RouterFactory } from './gates.ts'

export const WEIGHTS_FILE = 'model.safetensors'
export const MANIFEST_FILE = 'manifest.json'
const MAX_MANIFEST_BYTES = 16 * 1024 * 1024

const ExportedExpert = z.strictObject({
  slot: z.number().int().min(0),
  id: z.string(),
  owner: z.string(),
  /** The artifact's address (sha256 of the artifact file). */
  artifact: Hex64,
  /** The owner's signed manifest, as it was verified (signature included, so provenance can be re-checked). */
  manifest: ExpertManifest,
  signature: SignatureText.optional()
})

export const ExportManifest = z.strictObject({
  format: z.literal('forgemesh-moe-export'),
  version: z.literal(1),
  architecture: z.unknown(),
  specHash: Hex64,
  weights: z.strictObject({ file: z.literal(WEIGHTS_FILE), sha256: Hex64, bytes: z.number().int().min(1) }),
  router: z.strictObject({ kind: z.string().min(1).max(64), topK: z.union([z.number().int().min(1), z.literal('all')]), renormalise: z.boolean() }),
  experts: z.array(ExportedExpert).max(256),
  masked: z.array(z.strictObject({ slot: z.number().int().min(0), reason: z.enum(['absent', 'opted-out']), id: z.string().optional(), owner: z.string().optional() })).max(256),
  metrics: z.record(z.string(), z.number()),
  shared: z.strictObject({ round: z.number().int().min(0) }).nullable(),
  createdAt: z.number()
})
export type ExportManifest = z.infer<typeof ExportManifest>

export interface ExportOptions {
  /** Figures for the whole model, e.g. { accuracy: 0.97 } on a test set. */
  metrics?: Record<string, number>
  /** The federated round the shared parameters were committed in. */
  round?: number
  /** Signatures of the experts' manifests, by artifact hash, to keep provenance checkable. */
  signatures?: ReadonlyMap<string, string>
}

/** Writes model.safetensors and manifest.json into `dir` (created if needed); returns the manifest. */
export async function exportModel (moe: AssembledMoe, dir: string, options: ExportOptions, components: { clock: Clock }): Promise<ExportManifest> {
  const params = moe.model.getParams()
  const masked: ExportManifest['masked'] = []
  const experts: ExportManifest['experts'] = []
  for (let slot = 0; slot < moe.spec.experts; slot++) {
    const s = moe.slots[slot]
    if (s === undefined) { masked.push({ slot, reason: 'absent' }); continue }
    if (moe.mask[slot] === 0) {
      masked.push({ slot, reason: 'opted-out', id: s.id, owner: s.owner })
      for (const [name, t] of params) if (name.startsWith(`expert.${slot}.`)) params.set(name, { shape: t.shape, data: new Float32Array(t.data.length) })
      continue
    }
    const signature = options.signatures?.get(s.hash)
    experts.push({ slot, id: s.id, owner: s.owner, artifact: s.hash, manifest: s.manifest, ...(signature !== undefined ? { signature } : {}) })
  }
  const routerTensors = moe.router.tensors ?? new Map()
  for (const name of routerTensors.keys()) if (!name.startsWith('router.')) throw new ExportFormatError(`router tensor '${name}' must be named router.*`)
  const bytes = encodeSafetensors(sortedTensorMap([...params, ...routerTensors]), { [SPEC_KEY]: canonicalJson(moe.spec), [SPEC_HASH_KEY]: specHash(moe.spec) })
  const manifest: ExportManifest = {
    format: 'forgemesh-moe-export',
    version: 1,
    architecture: JSON.parse(canonicalJson(moe.spec)) as unknown,
    specHash: specHash(moe.spec),
    weights: { file: WEIGHTS_FILE, sha256: sha256Hex(bytes), bytes: bytes.byteLength },
    router: { kind: moe.router.kind, topK: moe.selection.topK, renormalise: moe.selection.renormalise },
    experts,
    masked,
    metrics: options.metrics ?? {},
    shared: options.round === undefined ? null : { round: options.round },
    createdAt: components.clock.now()
  }
  await mkdir(dir, { recursive: true })
  // Weights first, manifest last, each via rename: a reader never sees a manifest without its weights.
  await writeAtomic(join(dir, WEIGHTS_FILE), bytes)
  await writeAtomic(join(dir, MANIFEST_FILE), new TextEncoder().encode(JSON.stringify(manifest, null, 2) + '\n'))
  return manifest
}

async function writeAtomic (path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`
  await writeFile(tmp, bytes)
  await rename(tmp, path)
}

export interface LoadedExport {
  manifest: ExportManifest
  moe: AssembledMoe
  /** Every tensor of model.safetensors as stored (model parameters and router.*). */
  tensors: TensorMap
}

/** Reads an export folder back. Routers other than 'learned' need their factory in `routers`. */
export async function loadExport (dir: string, options: { routers?: Record<string, RouterFactory>, maxBytes?: number } = {}): Promise<LoadedExport> {
  const manifest = await readManifest(join(dir, MANIFEST_FILE))
  const spec: MoeSpec = (() => {
    try { return parseMoeSpec(manifest.architecture) } catch (err) { throw new ExportFormatError(`${MANIFEST_FILE}: architecture: ${(err as Error).message}`) }
  })()
  if (specHash(spec) !== manifest.specHash) throw new ExportFormatError(`${MANIFEST_FILE}: the architecture hashes to ${specHash(spec).slice(0, 12)}…, the manifest says ${manifest.specHash.slice(0, 12)}…`)
  const path = join(dir, WEIGHTS_FILE)
  const size = await stat(path).then(s => s.size, () => { throw new ExportFormatError(`${path} is missing`) })
  if (size !== manifest.weights.bytes) throw new ExportFormatError(`${WEIGHTS_FILE} is ${size} bytes, the manifest says ${manifest.weights.bytes}`)
  const bytes = new Uint8Array(await readFile(path))
  const actual = sha256Hex(bytes)
  if (actual !== manifest.weights.sha256) throw new ExportFormatError(`${WEIGHTS_FILE} hashes to ${actual}, the manifest says ${manifest.weights.sha256}`)
  let tensors: TensorMap
  try {
    tensors = decodeSafetensors(bytes, { maxBytes: options.maxBytes ?? bytes.byteLength }).tensors
  } catch (err) {
    throw new ExportFormatError(`${WEIGHTS_FILE}: ${(err as Error).message}`, { cause: err })
  }
  const params = sortedTensorMap([...tensors].filter(([n]) => !n.startsWith('router.')))
  const saved = sortedTensorMap([...tensors].filter(([n]) => n.startsWith('router.')))
  const slots: Array<ExpertSlot | undefined> = new Array(spec.experts).fill(undefined)
  for (const e of manifest.experts) {
    if (e.slot >= spec.experts || slots[e.slot] !== undefined) throw new ExportFormatError(`${MANIFEST_FILE}: expert '${e.id}' has slot ${e.slot}, which is out of range or taken`)
    slots[e.slot] = { slot: e.slot, id: e.id, owner: e.owner, hash: e.artifact, manifest: e.manifest }
  }
  const factory = manifest.router.kind === 'learned' ? undefined : options.routers?.[manifest.router.kind]
  if (manifest.router.kind !== 'learned' && factory === undefined) throw new ExportFormatError(`the export routes with '${manifest.router.kind}'; pass its factory in routers`)
  let moe: AssembledMoe
  try {
    moe = assembleFromParams({ spec, params, slots, router: factory, selection: manifest.router, savedRouter: saved })
  } catch (err) {
    if (err instanceof ParamMismatchError) throw new ExportFormatError(`${WEIGHTS_FILE}: ${err.message}`, { cause: err })
    throw err
  }
  return { manifest, moe, tensors }
}

async function readManifest (path: string): Promise<ExportManifest> {
  const size = await stat(path).then(s => s.size, () => { throw new ExportFormatError(`${path} is missing: not an export folder`) })
  if (size > MAX_MANIFEST_BYTES) throw new ExportFormatError(`${path} is ${size} bytes, more than ${MAX_MANIFEST_BYTES}`)
  let json: unknown
  try {
    json = JSON.parse(await readFile(path, 'utf8'))
  } catch {
    throw new ExportFormatError(`${path} is not valid JSON`)
  }
  const parsed = ExportManifest.safeParse(json)
  if (!parsed.success) throw new ExportFormatError(`${path}: ${describe(parsed.error)}`)
  return parsed.data
}

/** The shared parameters as a file the export command reads: safetensors with the spec in its metadata. */
export function sharedToSafetensors (spec: MoeSpec, shared: TensorMap): Uint8Array {
  const names = new Set(paramDefs(spec).filter(d => d.name.startsWith('shared.')).map(d => d.name))
  return encodeSafetensors(sortedTensorMap([...shared].filter(([n]) => names.has(n))), { [SPEC_KEY]: canonicalJson(spec), [SPEC_HASH_KEY]: specHash(spec) })
}

export function sharedFromSafetensors (bytes: Uint8Array, what = 'shared parameters file'): { spec: MoeSpec, shared: TensorMap } {
  let decoded
  try {
    decoded = decodeSafetensors(bytes)
  } catch (err) {
    throw new ExportFormatError(`${what}: ${(err as Error).message}`, { cause: err })
  }
  const text = decoded.metadata[SPEC_KEY]
  if (text === undefined) throw new ExportFormatError(`${what} carries no model spec (metadata ${SPEC_KEY})`)
  let spec: MoeSpec
  try {
    spec = parseMoeSpec(JSON.parse(text))
  } catch (err) {
    throw new ExportFormatError(`${what}: ${(err as Error).message}`)
  }
  return { spec, shared: decoded.tensors }
}
