/**
 * The signed records of the experts area: an expert artifact's manifest and
 * a withdrawal (revocation). Both are signed by the owning site's Ed25519
 * key over a domain prefix plus their canonical JSON, so any member can check
 * them with nothing but the member list.
 */
import { z } from 'zod'
import { ARTIFACT_SIGNING_DOMAIN, REVOCATION_SIGNING_DOMAIN } from './constants.ts'

export const Hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'a lowercase hex sha256')
/** A libp2p peer id as text (base58btc multihash, or a CID starting with b). */
export const PeerIdText = z.string().min(16).max(128).regex(/^[1-9A-HJ-NP-Za-km-z]+$/, 'a base58 peer id')
export const ExpertId = z.string().min(1).max(64).regex(/^[A-Za-z0-9._:-]+$/, 'letters, digits and . _ : -')
const MetricName = z.string().min(1).max(64).regex(/^[A-Za-z0-9._:/-]+$/, 'letters, digits and . _ : / -')
/** Ed25519 signatures are 64 bytes: 88 characters of base64. */
export const SignatureText = z.string().length(88).regex(/^[A-Za-z0-9+/]+={0,2}$/, 'base64')

export const ExpertManifest = z.strictObject({
  siteId: PeerIdText,
  expertId: ExpertId,
  /** The expert's slot in the federation's MoE (its `expert.<slot>.*` parameters). */
  slot: z.number().int().min(0).max(255),
  version: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  parentVersion: z.number().int().min(1).nullable(),
  specHash: Hex64,
  /** Training examples behind this version (the site's own data). */
  sampleCount: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  /** Metrics on the site's own validation split, e.g. { accuracy: 0.991, loss: 0.03 }. */
  metrics: z.record(MetricName, z.number().finite()).refine(m => Object.keys(m).length <= 64, 'at most 64 metrics'),
  /** Milliseconds, from the site's injected clock. */
  createdAt: z.number().int().min(0),
  /** sha256 of the artifact's tensors as plain safetensors (no metadata). */
  weightsHash: Hex64
}).refine(m => m.parentVersion === null || m.parentVersion < m.version, { message: 'parentVersion must be below version', path: ['parentVersion'] })
export type ExpertManifest = z.infer<typeof ExpertManifest>

export const Revocation = z.strictObject({
  siteId: PeerIdText,
  expertId: ExpertId,
  /** Every version up to and including this one is withdrawn; a later version may be published again. */
  upToVersion: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  reason: z.string().max(512),
  createdAt: z.number().int().min(0)
})
export type Revocation = z.infer<typeof Revocation>

export const SignedRevocation = z.strictObject({ revocation: Revocation, signature: SignatureText })
export type SignedRevocation = z.infer<typeof SignedRevocation>

/** JSON with object keys sorted at every level: the one spelling that is signed. */
export function canonicalRecordJson (value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalRecordJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).filter(k => (value as Record<string, unknown>)[k] !== undefined).sort()
    return `{${keys.map(k => `${JSON.stringify(k)}:${canonicalRecordJson((value as Record<string, unknown>)[k])}`).join(',')}}`
  }
  return JSON.stringify(value)
}

const encoder = new TextEncoder()

export function manifestSigningBytes (manifest: ExpertManifest): Uint8Array {
  return encoder.encode(ARTIFACT_SIGNING_DOMAIN + canonicalRecordJson(manifest))
}

export function revocationSigningBytes (revocation: Revocation): Uint8Array {
  return encoder.encode(REVOCATION_SIGNING_DOMAIN + canonicalRecordJson(revocation))
}
