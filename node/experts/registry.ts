/**
 * The expert registry of a site, on its LevelDB store: artifact bytes in
 * `blobs` (checked against their hash on every read), and in `experts` one
 * record per artifact, a history index per (site, expert, version), the
 * revocations, and the committed shared parameters assembly starts from.
 * An artifact's blob, record and index entry are written in one batch.
 *
 *   experts/a/<hash>                           ArtifactRecord
 *   experts/v/<site>/<expert>/<version>/<hash> ''  (history index)
 *   experts/w/<site>/<expert>                  SignedRevocation (highest upToVersion)
 *   experts/shared                             SharedRecord (+ its safetensors in blobs)
 */
import { z } from 'zod'
import type { Clock } from '../../coordinator/components.ts'
import { ExpertManifest, Hex64, SignedRevocation } from '../../protocols/experts-announce/records.ts'
import { decodeSafetensors, encodeSafetensors } from '../../protocols/safetensors/index.ts'
import type { TensorMap } from '../../protocols/tensors.ts'
import { CorruptRecordError } from '../errors.ts'
import type { BlobSource } from '../mesh/blob-io.ts'
import { canonicalJson, parseMoeSpec, specHash, type MoeSpec } from '../model/spec.ts'
import type { SiteStore } from '../store.ts'
import { memberKeys, verifyArtifact, type VerifiedArtifact } from './artifact.ts'

export const ArtifactRecord = z.strictObject({
  hash: Hex64,
  size: z.number().int().min(1),
  manifest: ExpertManifest,
  /** Peer the bytes came from (this site's own id for its own artifacts). */
  from: z.string().max(128),
  storedAt: z.number()
})
export type ArtifactRecord = z.infer<typeof ArtifactRecord>

const SharedRecord = z.strictObject({
  spec: z.unknown(),
  specHash: Hex64,
  round: z.number().int().min(0),
  hash: Hex64
})

export interface SharedSnapshot { spec: MoeSpec, params: TensorMap, round: number }

export interface ExpertRegistry {
  /** Stores a verified artifact; false when it was already there. */
  put: (artifact: VerifiedArtifact, info: { from: string }) => Promise<boolean>
  has: (hash: string) => Promise<boolean>
  record: (hash: string) => Promise<ArtifactRecord | undefined>
  /** The artifact's bytes read back and checked again (hash, signature, weights; with `spec`, its shapes too). */
  load: (hash: string, options?: { spec?: MoeSpec }) => Promise<VerifiedArtifact>
  /** Every stored artifact, in hash order. */
  list: () => Promise<ArtifactRecord[]>
  /** All versions of one expert, oldest first. */
  history: (siteId: string, expertId: string) => Promise<ArtifactRecord[]>
  /** The latest version of every expert that is not withdrawn, by slot then site. */
  usable: () => Promise<ArtifactRecord[]>
  /** Records a verified revocation; false when an equal or wider one was already there. */
  withdraw: (signed: SignedRevocation) => Promise<boolean>
  revocations: () => Promise<SignedRevocation[]>
  isWithdrawn: (manifest: Pick<ExpertManifest, 'siteId' | 'expertId' | 'version'>) => Promise<boolean>
  /** Serves the stored artifacts (and nothing else in the store) on the artifact protocol. */
  blobSource: () => BlobSource
  putShared: (spec: MoeSpec, params: TensorMap, round: number) => Promise<void>
  getShared: () => Promise<SharedSnapshot | undefined>
}

const VERSION_WIDTH = 16
/** Artifacts kept in memory by a blob source while peers fetch them. */
const SERVE_CACHE_ENTRIES = 4

const artifactKey = (hash: string): string => `a/${hash}`
const historyPrefix = (siteId: string, expertId: string): string => `v/${siteId}/${expertId}/`
const historyKey = (m: ExpertManifest, hash: string): string => `${historyPrefix(m.siteId, m.expertId)}${String(m.version).padStart(VERSION_WIDTH, '0')}/${hash}`
const withdrawnKey = (siteId: string, expertId: string): string => `w/${siteId}/${expertId}`

export function createExpertRegistry (components: { store: SiteStore, clock: Clock }): ExpertRegistry {
  const { store, clock } = components
  // Read-modify-write steps (withdraw) run one at a time.
  let tail: Promise<unknown> = Promise.resolve()
  const serial = async <T>(fn: () => Promise<T>): Promise<T> => {
    const next = tail.then(fn)
    tail = next.catch(() => {})
    return await next
  }

  const record = async (hash: string): Promise<ArtifactRecord | undefined> => await store.getJson('experts', artifactKey(hash), ArtifactRecord)

  const list = async (): Promise<ArtifactRecord[]> => {
    const out: ArtifactRecord[] = []
    for await (const [key] of store.entries('experts', { gte: 'a/', lt: 'a0' })) {
      const r = await record(key.slice(2))
      if (r !== undefined) out.push(r)
    }
    return out
  }

  const revocation = async (siteId: string, expertId: string): Promise<SignedRevocation | undefined> =>
    await store.getJson('experts', withdrawnKey(siteId, expertId), SignedRevocation)

  const isWithdrawn: ExpertRegistry['isWithdrawn'] = async (m) => {
    const r = await revocation(m.siteId, m.expertId)
    return r !== undefined && m.version <= r.revocation.upToVersion
  }

  const history = async (siteId: string, expertId: string): Promise<ArtifactRecord[]> => {
    const prefix = historyPrefix(siteId, expertId)
    const out: ArtifactRecord[] = []
    for await (const [key] of store.entries('experts', { gte: prefix, lt: `${prefix}\xff` })) {
      const r = await record(key.slice(key.lastIndexOf('/') + 1))
      if (r === undefined) throw new CorruptRecordError(`history entry ${key} names an artifact the registry does not hold`)
      out.push(r)
    }
    return out
  }

  return {
    put: async (artifact, info) => {
      if (await store.getBytes('experts', artifactKey(artifact.hash)) !== undefined) return false
      const rec: ArtifactRecord = { hash: artifact.hash, size: artifact.bytes.byteLength, manifest: artifact.manifest, from: info.from, storedAt: clock.now() }
      await store.batch([
        { sublevel: 'blobs', type: 'put', key: artifact.hash, value: artifact.bytes },
        { sublevel: 'experts', type: 'put', key: artifactKey(artifact.hash), value: rec },
        { sublevel: 'experts', type: 'put', key: historyKey(artifact.manifest, artifact.hash), value: new Uint8Array(0) }
      ])
      return true
    },
    has: async (hash) => await store.getBytes('experts', artifactKey(hash)) !== undefined,
    record,
    load: async (hash, options = {}) => {
      const rec = await record(hash)
      const bytes = await store.getBlob(hash)
      if (rec === undefined || bytes === undefined) throw new CorruptRecordError(`the registry holds no artifact ${hash}`)
      // The signer was a member when the artifact was stored; its key is in its peer id.
      return await verifyArtifact(bytes, { members: memberKeys([rec.manifest.siteId]), specHash: rec.manifest.specHash, expectedHash: hash, ...(options.spec !== undefined ? { spec: options.spec } : {}) })
    },
    list,
    history,
    usable: async () => {
      const latest = new Map<string, ArtifactRecord>()
      for (const r of await list()) {
        if (await isWithdrawn(r.manifest)) continue
        const key = `${r.manifest.siteId}/${r.manifest.expertId}`
        const seen = latest.get(key)
        // Latest version wins; a tie (the owner signed two artifacts as one version) goes to the later createdAt, then the hash.
        if (seen === undefined || compareVersions(r, seen) > 0) latest.set(key, r)
      }
      return [...latest.values()].sort((a, b) => a.manifest.slot - b.manifest.slot || (a.manifest.siteId < b.manifest.siteId ? -1 : 1))
    },
    withdraw: async (signed) => await serial(async () => {
      const { siteId, expertId, upToVersion } = signed.revocation
      const have = await revocation(siteId, expertId)
      if (have !== undefined && have.revocation.upToVersion >= upToVersion) return false
      await store.putJson('experts', withdrawnKey(siteId, expertId), signed)
      return true
    }),
    revocations: async () => {
      const out: SignedRevocation[] = []
      for await (const [key] of store.entries('experts', { gte: 'w/', lt: 'w0' })) {
        const r = await store.getJson('experts', key, SignedRevocation)
        if (r !== undefined) out.push(r)
      }
      return out
    },
    isWithdrawn,
    blobSource: () => {
      // LevelDB reads a value whole and the store hashes it on every read: keep the
      // last few verified artifacts so a chunked fetch does not re-read them per chunk.
      const recent = new Map<string, Promise<Uint8Array>>()
      return {
        getBlobSize: async (hash) => (await record(hash))?.size,
        getBlobRange: async (hash, offset, length) => {
          let pending = recent.get(hash)
          if (pending === undefined) {
            pending = store.getBlob(hash).then(bytes => {
              if (bytes === undefined) throw new CorruptRecordError(`artifact ${hash} has a record but no bytes`)
              return bytes
            })
            recent.set(hash, pending)
            pending.catch(() => { recent.delete(hash) })
            if (recent.size > SERVE_CACHE_ENTRIES) recent.delete(recent.keys().next().value!)
          }
          return (await pending).subarray(offset, offset + length)
        }
      }
    },
    putShared: async (spec, params, round) => {
      const bytes = encodeSafetensors(params)
      const hash = await store.putBlob(bytes)
      await store.putJson('experts', 'shared', { spec: JSON.parse(canonicalJson(spec)) as unknown, specHash: specHash(spec), round, hash })
    },
    getShared: async () => {
      const rec = await store.getJson('experts', 'shared', SharedRecord)
      if (rec === undefined) return undefined
      const spec = parseMoeSpec(rec.spec)
      if (specHash(spec) !== rec.specHash) throw new CorruptRecordError(`the stored shared parameters name spec ${rec.specHash.slice(0, 12)}… but carry another spec`)
      const bytes = await store.getBlob(rec.hash)
      if (bytes === undefined) throw new CorruptRecordError(`the shared parameters blob ${rec.hash} is missing`)
      return { spec, params: decodeSafetensors(bytes).tensors, round: rec.round }
    }
  }
}

function compareVersions (a: ArtifactRecord, b: ArtifactRecord): number {
  return a.manifest.version - b.manifest.version || a.manifest.createdAt - b.manifest.createdAt || (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0)
}
