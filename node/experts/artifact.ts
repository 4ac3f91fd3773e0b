/**
 * Expert artifacts: one safetensors file holding an expert's weights
 * (`expert.<slot>.*`, named as in the model), optional router data
 * (`router.*`: a FlexOlmo-style router row, prototypes, ...), and in its
 * metadata the manifest and the owner's Ed25519 signature over it. The file's
 * sha256 is its address on the mesh; the manifest carries the sha256 of the
 * tensors alone, so the signature covers the weights too.
 *
 * Verification order (each failure has its own named error): size and format,
 * the address asked for, membership of the signer, the signature, the weights
 * hash, then the spec (hash, slot, tensor names and shapes).
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { z } from 'zod'
import type { Clock } from '../../coordinator/components.ts'
import { ARTIFACT_FORMAT, MAX_ARTIFACT_BYTES, META_FORMAT, META_MANIFEST, META_SIGNATURE } from '../../protocols/experts-announce/constants.ts'
import { canonicalRecordJson, ExpertManifest, manifestSigningBytes, SignatureText } from '../../protocols/experts-announce/records.ts'
import { decodeSafetensors, encodeSafetensors } from '../../protocols/safetensors/index.ts'
import { elementCount, sortedTensorMap, type TensorMap } from '../../protocols/tensors.ts'
import { ArtifactFormatError, ArtifactHashMismatchError, ArtifactSignatureError, ConfigError, NotAMemberError, SpecMismatchError } from '../errors.ts'
import { verifySignature, type SiteIdentity } from '../identity.ts'
import { groupOf, paramDefs } from '../model/params.ts'
import { specHash as hashSpec, type MoeSpec } from '../model/spec.ts'
import { sha256Hex } from '../store.ts'

export type { ExpertManifest } from '../../protocols/experts-announce/records.ts'

/** Member peer id -> raw 32-byte Ed25519 public key. */
export type MemberKeys = ReadonlyMap<string, Uint8Array>

/** Router data an artifact may carry, bounded so a router row cannot smuggle a second model. */
const MAX_ROUTER_VALUES = 1 << 20
const ROUTER_PREFIX = 'router.'

export interface VerifiedArtifact {
  /** sha256 of the whole file: the artifact's address. */
  hash: string
  bytes: Uint8Array
  manifest: ExpertManifest
  signature: string
  /** `expert.<slot>.*` parameters, names sorted. */
  weights: TensorMap
  /** `router.*` tensors (e.g. `router.row.w` [width], `router.row.b` [1]); may be empty. */
  router: TensorMap
}

export interface BuildArtifactInput {
  identity: SiteIdentity
  spec: MoeSpec
  expertId: string
  slot: number
  version: number
  parentVersion?: number | null
  sampleCount: number
  metrics?: Record<string, number>
  /** Must hold exactly the slot's `expert.<slot>.*` parameters; other names are ignored. */
  params: TensorMap
  /** Optional `router.*` tensors. */
  router?: TensorMap
}

/** Member keys from peer ids: an Ed25519 peer id embeds its public key. */
export function memberKeys (peerIds: Iterable<string>): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>()
  for (const id of peerIds) {
    let key
    try {
      key = peerIdFromString(id).publicKey
    } catch (err) {
      throw new ConfigError(`'${id}' is not a peer id: ${(err as Error).message}`)
    }
    if (key === undefined || key.type !== 'Ed25519') throw new ConfigError(`peer id ${id} does not embed an Ed25519 key`)
    out.set(id, key.raw)
  }
  return out
}

/** sha256 of tensors encoded as plain float32 safetensors, names sorted: what a manifest's weightsHash names. */
export function weightsHash (tensors: TensorMap): string {
  return sha256Hex(encodeSafetensors(sortedTensorMap(tensors)))
}

/** The expert parameters of one slot, picked from `params` and checked against the spec. */
export function expertParams (spec: MoeSpec, slot: number, params: TensorMap): TensorMap {
  if (!Number.isInteger(slot) || slot < 0 || slot >= spec.experts) throw new SpecMismatchError(`slot ${slot} is outside this spec's ${spec.experts} experts`)
  const defs = paramDefs(spec).filter(d => groupOf(d.name) === `expert:${slot}`)
  return sortedTensorMap(defs.map(d => {
    const t = params.get(d.name)
    if (t === undefined) throw new SpecMismatchError(`expert slot ${slot} is missing parameter '${d.name}'`)
    if (t.shape.length !== d.shape.length || t.shape.some((v, i) => v !== d.shape[i]) || t.data.length !== elementCount(d.shape)) {
      throw new SpecMismatchError(`parameter '${d.name}' has shape [${t.shape.join(', ')}], the spec needs [${d.shape.join(', ')}]`)
    }
    return [d.name, { shape: [...t.shape], data: Float32Array.from(t.data) }]
  }))
}

function checkRouterTensors (router: TensorMap): void {
  let total = 0
  for (const [name, t] of router) {
    if (!name.startsWith(ROUTER_PREFIX)) throw new SpecMismatchError(`router tensor '${name}' must be named router.*`)
    total += t.data.length
  }
  if (total > MAX_ROUTER_VALUES) throw new SpecMismatchError(`router tensors hold ${total} values, more than ${MAX_ROUTER_VALUES}`)
}

/** Builds and signs an artifact; `createdAt` comes from the injected clock. */
export async function buildArtifact (input: BuildArtifactInput, components: { clock: Clock }): Promise<VerifiedArtifact> {
  const weights = expertParams(input.spec, input.slot, input.params)
  const router = sortedTensorMap(input.router ?? new Map())
  checkRouterTensors(router)
  const parsed = ExpertManifest.safeParse({
    siteId: input.identity.peerId,
    expertId: input.expertId,
    slot: input.slot,
    version: input.version,
    parentVersion: input.parentVersion ?? null,
    specHash: hashSpec(input.spec),
    sampleCount: input.sampleCount,
    metrics: input.metrics ?? {},
    createdAt: Math.floor(components.clock.now()),
    weightsHash: weightsHash(new Map([...weights, ...router]))
  })
  if (!parsed.success) throw new ArtifactFormatError(`cannot build artifact: ${describe(parsed.error)}`)
  const manifest = parsed.data
  const signature = Buffer.from(await input.identity.sign(manifestSigningBytes(manifest))).toString('base64')
  const bytes = encodeSafetensors(sortedTensorMap([...weights, ...router]), {
    [META_FORMAT]: ARTIFACT_FORMAT,
    [META_MANIFEST]: canonicalRecordJson(manifest),
    [META_SIGNATURE]: signature
  })
  return { hash: sha256Hex(bytes), bytes, manifest, signature, weights, router }
}

export interface VerifyOptions {
  members: MemberKeys
  /** The federation's spec hash; with `spec`, tensor names and shapes are checked too. */
  specHash: string
  spec?: MoeSpec
  /** The address the bytes were fetched under. */
  expectedHash?: string
  maxBytes?: number
}

/** Decodes and verifies an artifact; throws the named error of the first check that fails. */
export async function verifyArtifact (bytes: Uint8Array, options: VerifyOptions): Promise<VerifiedArtifact> {
  const maxBytes = options.maxBytes ?? MAX_ARTIFACT_BYTES
  if (bytes.byteLength > maxBytes) throw new ArtifactFormatError(`artifact of ${bytes.byteLength} bytes exceeds the ${maxBytes}-byte limit`)
  const hash = sha256Hex(bytes)
  if (options.expectedHash !== undefined && hash !== options.expectedHash) {
    throw new ArtifactHashMismatchError(`artifact bytes hash to ${hash}, not the ${options.expectedHash} they were fetched as`)
  }
  let decoded
  try {
    decoded = decodeSafetensors(bytes, { maxBytes })
  } catch (err) {
    throw new ArtifactFormatError(`artifact ${hash.slice(0, 12)} is not safetensors: ${(err as Error).message}`, { cause: err })
  }
  const { tensors, metadata } = decoded
  if (metadata[META_FORMAT] !== ARTIFACT_FORMAT) throw new ArtifactFormatError(`artifact ${hash.slice(0, 12)} is not a ${ARTIFACT_FORMAT} file`)
  const manifest = parseManifest(metadata[META_MANIFEST], hash)
  const signature = SignatureText.safeParse(metadata[META_SIGNATURE])
  if (!signature.success) throw new ArtifactSignatureError(`artifact ${hash.slice(0, 12)} carries no well-formed signature`)

  const key = options.members.get(manifest.siteId)
  if (key === undefined) throw new NotAMemberError(`artifact ${hash.slice(0, 12)} (expert '${manifest.expertId}') is signed by ${manifest.siteId}, which is not a member`)
  if (!await verifySignature(key, manifestSigningBytes(manifest), Buffer.from(signature.data, 'base64'))) {
    throw new ArtifactSignatureError(`artifact ${hash.slice(0, 12)} (expert '${manifest.expertId}'): the signature does not verify with the key of ${manifest.siteId}`)
  }
  const actual = weightsHash(tensors)
  if (actual !== manifest.weightsHash) {
    throw new ArtifactHashMismatchError(`artifact ${hash.slice(0, 12)} (expert '${manifest.expertId}'): its tensors hash to ${actual}, the signed manifest says ${manifest.weightsHash}`)
  }
  if (manifest.specHash !== options.specHash) {
    throw new SpecMismatchError(`artifact ${hash.slice(0, 12)} (expert '${manifest.expertId}') was built for spec ${manifest.specHash.slice(0, 12)}…, this federation runs ${options.specHash.slice(0, 12)}…`)
  }
  const router = sortedTensorMap([...tensors].filter(([name]) => name.startsWith(ROUTER_PREFIX)))
  checkRouterTensors(router)
  const rest = new Map([...tensors].filter(([name]) => !name.startsWith(ROUTER_PREFIX)))
  let weights = rest
  if (options.spec !== undefined) {
    weights = expertParams(options.spec, manifest.slot, rest)
    if (weights.size !== rest.size) throw new SpecMismatchError(`artifact ${hash.slice(0, 12)} holds tensors outside expert slot ${manifest.slot}: ${[...rest.keys()].filter(n => !weights.has(n)).slice(0, 3).join(', ')}`)
  } else if ([...rest.keys()].some(n => !n.startsWith(`expert.${manifest.slot}.`))) {
    throw new SpecMismatchError(`artifact ${hash.slice(0, 12)} holds tensors outside expert slot ${manifest.slot}`)
  }
  return { hash, bytes, manifest, signature: signature.data, weights: sortedTensorMap(weights), router }
}

function parseManifest (text: string | undefined, hash: string): ExpertManifest {
  if (text === undefined) throw new ArtifactFormatError(`artifact ${hash.slice(0, 12)} has no manifest`)
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    throw new ArtifactFormatError(`artifact ${hash.slice(0, 12)}: the manifest is not JSON`)
  }
  const parsed = ExpertManifest.safeParse(json)
  if (!parsed.success) throw new ArtifactFormatError(`artifact ${hash.slice(0, 12)}: manifest ${describe(parsed.error)}`)
  return parsed.data
}

export function describe (error: z.ZodError): string {
  const issue = error.issues[0]
  return issue === undefined ? 'invalid' : `${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${issue.message}`
}
