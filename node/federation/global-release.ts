/**
 * Routing release 1 summed at one member instead of sent to every member.
 *
 * Only the SUM of the sites' noised global moments is ever used (it fixes the
 * shared PCA projection, docs/routing.md). Sending each site's 1.23 MB release
 * to every other member made setup bytes grow as N². Here each site signs its
 * release as a contribution artifact and serves it to ONE aggregator (the
 * round coordinator): the aggregator fetches every contribution, verifies its
 * signature and membership, sums them, derives the projection and publishes
 * one artifact of its own carrying the sum, the projection and the hashes of
 * the contributions it summed. Every member fetches that one artifact. Per
 * site that is one release up and one sum down, whatever N is; the
 * aggregator's own load is O(N), as for a round's coordinator.
 *
 * Contributions never enter a registry: a registry's inventory is offered to
 * every peer that connects, so they would leak back into all-to-all on the
 * first reconnect. A site serves its contribution from memory beside its
 * registry (`withHeldBlobs`) until the aggregator's artifact is out.
 *
 * DP accounting is unchanged: each site charges its release to its own
 * ledger when it makes it (routing-releases.ts); the aggregator adds nothing.
 */
import type { Clock } from '../../coordinator/components.ts'
import { addMoments, type Moments } from '../../coordinator/routing/moments.ts'
import type { Projection } from '../../coordinator/routing/projection.ts'
import type { RoutingConfig } from '../../coordinator/routing/config.ts'
import type { Tensor, TensorMap } from '../../protocols/tensors.ts'
import { FederationError } from '../errors.ts'
import { buildArtifact, verifyArtifact, type MemberKeys, type VerifiedArtifact } from '../experts/artifact.ts'
import type { SiteIdentity } from '../identity.ts'
import type { PublishInput } from '../experts/exchange.ts'
import type { BlobSource } from '../mesh/blob-io.ts'
import { specHash as hashSpec, type MoeSpec } from '../model/spec.ts'
import { globalMomentsFromTensors, globalMomentsToTensors, projectionFromTensors, projectionToTensors } from './release-tensors.ts'
import { sharedProjection } from './routing-releases.ts'

/** expertId suffixes: a site's contribution, and the aggregator's summed release. */
export const CONTRIBUTION_SUFFIX = '.routing-release-1'
export const ROUTING_SUFFIX = '.routing'

const SOURCES = 'router.global.sources'
/** A sha256 as 16 words of 16 bits: float32 holds each exactly. */
const WORDS = 16

export const isRoutingArtifact = (m: { expertId: string }): boolean => m.expertId.endsWith(ROUTING_SUFFIX)

export interface ContributionInput {
  identity: SiteIdentity
  spec: MoeSpec
  /** The site's name, for the expertId. */
  site: string
  slot: number
  sampleCount: number
  /** The site's current expert parameters (an artifact always carries its slot's weights). */
  params: TensorMap
  /** The site's noised global moments, already charged to its ledger. */
  moments: Moments
}

/** The site's release 1 as a signed artifact (never put in a registry, see above). */
export async function buildContribution (input: ContributionInput, components: { clock: Clock }): Promise<VerifiedArtifact> {
  return await buildArtifact({
    identity: input.identity,
    spec: input.spec,
    expertId: `${input.site}${CONTRIBUTION_SUFFIX}`,
    slot: input.slot,
    version: 1,
    sampleCount: input.sampleCount,
    params: input.params,
    router: globalMomentsToTensors(input.moments)
  }, components)
}

/** A blob source that serves a few held blobs (contributions) before `base` (the registry). */
export function withHeldBlobs (base: BlobSource): BlobSource & { hold: (hash: string, bytes: Uint8Array) => void, drop: (hash: string) => void } {
  const held = new Map<string, Uint8Array>()
  return {
    getBlobSize: async (hash) => held.get(hash)?.byteLength ?? await base.getBlobSize(hash),
    getBlobRange: async (hash, offset, length) => {
      const bytes = held.get(hash)
      return bytes !== undefined ? bytes.subarray(offset, offset + length) : await base.getBlobRange(hash, offset, length)
    },
    hold: (hash, bytes) => { held.set(hash, bytes) },
    drop: (hash) => { held.delete(hash) }
  }
}

export interface Contribution { peerId: string, hash: string }

export interface CollectInit {
  spec: MoeSpec
  members: MemberKeys
  /** Contributions fetched at once (each is ~1.2 MB). Default 4. */
  concurrency?: number
}

/** The verified contributions, each with its slot and moments, in slot then site order (the order they are summed in). */
export async function collectContributions (
  contributions: readonly Contribution[], init: CollectInit,
  fetchBytes: (c: Contribution, signal?: AbortSignal) => Promise<Uint8Array>, options: { signal?: AbortSignal } = {}
): Promise<Array<{ peerId: string, hash: string, slot: number, moments: Moments }>> {
  const specHash = hashSpec(init.spec)
  const out: Array<{ peerId: string, hash: string, slot: number, moments: Moments }> = []
  const queue = [...contributions]
  const worker = async (): Promise<void> => {
    for (let c = queue.shift(); c !== undefined; c = queue.shift()) {
      const bytes = await fetchBytes(c, options.signal)
      const a = await verifyArtifact(bytes, { members: init.members, specHash, spec: init.spec, expectedHash: c.hash })
      if (a.manifest.siteId !== c.peerId) throw new FederationError(`contribution ${c.hash} from ${c.peerId} is signed by ${a.manifest.siteId}`)
      if (!a.manifest.expertId.endsWith(CONTRIBUTION_SUFFIX)) throw new FederationError(`artifact ${c.hash} from ${c.peerId} is '${a.manifest.expertId}', not a routing release 1`)
      out.push({ peerId: c.peerId, hash: c.hash, slot: a.manifest.slot, moments: globalMomentsFromTensors(a.router) })
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, init.concurrency ?? 4) }, worker))
  const peers = new Set(out.map(c => c.peerId))
  if (peers.size !== out.length) throw new FederationError('a site contributed routing release 1 more than once')
  return out.sort((a, b) => a.slot - b.slot || (a.peerId < b.peerId ? -1 : 1))
}

/** The aggregator's router tensors: the sum, the projection derived from it, and the contributions summed. */
export function summedRelease (contributions: ReadonlyArray<{ hash: string, moments: Moments }>, config: RoutingConfig, federation: string): { sum: Moments, projection: Projection, router: TensorMap } {
  const sum = addMoments(contributions.map(c => c.moments))
  // Through float32 once, so the aggregator and every member that reads the artifact use the same coordinates.
  const projection = projectionFromTensors(projectionToTensors(sharedProjection([sum], config, federation)))
  const router = new Map([...globalMomentsToTensors(sum), ...projectionToTensors(projection), [SOURCES, sourcesToTensor(contributions.map(c => c.hash))] as const])
  return { sum, projection, router }
}

/** The aggregator's routing artifact as an exchange publishes it: the sum and the projection, under the aggregator's name. */
export function routingPublication (site: string, slot: number, summed: ReturnType<typeof summedRelease>, contributions: number, params: TensorMap): PublishInput {
  return {
    expertId: `${site}${ROUTING_SUFFIX}`,
    slot,
    version: 1,
    parentVersion: null,
    sampleCount: Math.round(summed.sum.count),
    metrics: { contributions },
    params,
    router: summed.router
  }
}

/** What a member reads from the aggregator's artifact: the projection, and which contributions were summed. */
export function readSummedRelease (router: TensorMap): { projection: Projection, sources: string[] } {
  const t = router.get(SOURCES)
  if (t === undefined) throw new FederationError('the routing artifact names no contributions (router.global.sources)')
  globalMomentsFromTensors(router) // shapes and finiteness of the sum
  return { projection: projectionFromTensors(router), sources: sourcesFromTensor(t) }
}

export function sourcesToTensor (hashes: readonly string[]): Tensor {
  const data = new Float32Array(hashes.length * WORDS)
  hashes.forEach((h, i) => {
    if (!/^[0-9a-f]{64}$/.test(h)) throw new FederationError(`'${h}' is not a sha256 hex digest`)
    for (let w = 0; w < WORDS; w++) data[i * WORDS + w] = parseInt(h.slice(w * 4, w * 4 + 4), 16)
  })
  return { shape: [hashes.length, WORDS], data }
}

export function sourcesFromTensor (t: Tensor): string[] {
  const n = t.shape[0] ?? 0
  if (t.shape.length !== 2 || t.shape[1] !== WORDS || t.data.length !== n * WORDS) throw new FederationError(`router.global.sources has shape [${t.shape.join(', ')}], want [n, ${WORDS}]`)
  return Array.from({ length: n }, (_, i) => Array.from(t.data.subarray(i * WORDS, (i + 1) * WORDS), v => {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new FederationError('router.global.sources holds a word that is not 16 bits')
    return v.toString(16).padStart(4, '0')
  }).join(''))
}
