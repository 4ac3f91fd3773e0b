/**
 * Where the experts of an assembly come from: a site's registry (the latest
 * usable version of each, re-verified on read) or artifact files (verified
 * against a member list). An artifact that fails is reported and left out;
 * assembly goes on with the rest.
 */
import { readFile, stat } from 'node:fs/promises'
import { MAX_ARTIFACT_BYTES } from '../../protocols/experts-announce/constants.ts'
import { ArtifactFormatError, SpecMismatchError } from '../errors.ts'
import { specHash, type MoeSpec } from '../model/spec.ts'
import { verifyArtifact, type MemberKeys, type VerifiedArtifact } from './artifact.ts'
import type { ExpertRegistry } from './registry.ts'

export interface RejectedArtifact {
  /** The file, or `registry:<hash>`. */
  source: string
  error: string
  message: string
}

export interface CollectedArtifacts {
  artifacts: VerifiedArtifact[]
  rejected: RejectedArtifact[]
}

const reject = (source: string, err: unknown): RejectedArtifact => ({
  source,
  error: err instanceof Error ? err.name : 'Error',
  message: err instanceof Error ? err.message : String(err)
})

/** The latest usable (not withdrawn) version of each expert in the registry, built for `spec`. */
export async function artifactsFromRegistry (registry: ExpertRegistry, spec: MoeSpec): Promise<CollectedArtifacts> {
  const out: CollectedArtifacts = { artifacts: [], rejected: [] }
  const want = specHash(spec)
  for (const rec of await registry.usable()) {
    const source = `registry:${rec.hash}`
    try {
      if (rec.manifest.specHash !== want) throw new SpecMismatchError(`expert '${rec.manifest.expertId}' was built for spec ${rec.manifest.specHash.slice(0, 12)}…, the shared parameters are for ${want.slice(0, 12)}…`)
      out.artifacts.push(await registry.load(rec.hash, { spec }))
    } catch (err) {
      out.rejected.push(reject(source, err))
    }
  }
  return out
}

/** Artifact files, each verified against the members and the spec. */
export async function artifactsFromFiles (paths: readonly string[], options: { members: MemberKeys, spec: MoeSpec }): Promise<CollectedArtifacts> {
  const out: CollectedArtifacts = { artifacts: [], rejected: [] }
  for (const path of paths) {
    try {
      const size = (await stat(path)).size
      if (size > MAX_ARTIFACT_BYTES) throw new ArtifactFormatError(`${path} is ${size} bytes, more than ${MAX_ARTIFACT_BYTES}`)
      const bytes = new Uint8Array(await readFile(path))
      out.artifacts.push(await verifyArtifact(bytes, { members: options.members, specHash: specHash(options.spec), spec: options.spec }))
    } catch (err) {
      out.rejected.push(reject(path, err))
    }
  }
  return out
}
