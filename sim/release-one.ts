/**
 * Routing release 1 through one aggregator, the elected round coordinator
 * (node/federation/global-release.ts has the why): each site makes its
 * release and holds it, signed, for the aggregator; the aggregator fetches
 * and verifies them all over the mesh, sums them and publishes the sum and
 * the projection; the phase ends when every site holds that artifact, and
 * the sites stop serving their contributions.
 */
import type { Logger } from '../coordinator/components.ts'
import type { RoutingConfig } from '../coordinator/routing/config.ts'
import type { Moments } from '../coordinator/routing/moments.ts'
import type { Projection } from '../coordinator/routing/projection.ts'
import type { TensorMap } from '../protocols/tensors.ts'
import type { MemberKeys } from '../node/experts/artifact.ts'
import type { ExpertExchange } from '../node/experts/exchange.ts'
import type { ExpertRegistry } from '../node/experts/registry.ts'
import { buildContribution, collectContributions, summedRelease, ROUTING_SUFFIX, type Contribution, type withHeldBlobs } from '../node/federation/global-release.ts'
import { fetchBlob } from '../node/mesh/transfer.ts'
import type { MoeSpec } from '../node/model/spec.ts'
import type { SimSite } from './fleet.ts'
import { waitFor } from './moe-helpers.ts'

export interface ReleaseOneInit {
  spec: MoeSpec
  routing: RoutingConfig
  /** The federation's name: the PCA seed. */
  federation: string
  members: MemberKeys
  timeoutMs: number
  signal?: AbortSignal
}

export interface ReleaseOneComponents {
  logger: Logger
  extrasOf: (s: SimSite) => { registry: ExpertRegistry, exchange: ExpertExchange, held: ReturnType<typeof withHeldBlobs> }
  /** The site's release 1 (charged to its ledger) and what its artifact carries beside it. */
  contribution: (s: SimSite) => Promise<{ slot: number, sampleCount: number, params: TensorMap, moments: Moments }>
}

export async function sumReleaseOneAt (sites: SimSite[], init: ReleaseOneInit, components: ReleaseOneComponents): Promise<{ projection: Projection, hash: string }> {
  const { extrasOf, logger: log } = components
  const elected = sites[0]!.site!.status().coordinator?.site
  const agg = sites.find(s => s.name === elected) ?? sites[0]!
  const clock = { now: () => Date.now() }
  const contributions: Contribution[] = []
  const own = new Map<string, Uint8Array>()
  let aggSlot = 0
  let aggParams: TensorMap = new Map()
  for (const s of sites) {
    const c = await components.contribution(s)
    if (s === agg) { aggSlot = c.slot; aggParams = c.params }
    const a = await buildContribution({ identity: s.identity, spec: init.spec, site: s.name, ...c }, { clock })
    extrasOf(s).held.hold(a.hash, a.bytes)
    own.set(a.hash, a.bytes)
    contributions.push({ peerId: s.identity.peerId, hash: a.hash })
  }
  const signal = init.signal !== undefined ? { signal: init.signal } : {}
  const collected = await collectContributions(contributions, { spec: init.spec, members: init.members }, async (c, sig) => {
    // The aggregator's own contribution needs no network.
    if (c.peerId === agg.identity.peerId) return own.get(c.hash)!
    const got = await fetchBlob(agg.site!.host, c.peerId, c.hash, { ...(sig !== undefined ? { signal: sig } : {}), logger: log })
    return got.bytes!
  }, signal)
  const summed = summedRelease(collected, init.routing, init.federation)
  const published = await extrasOf(agg).exchange.publish({
    expertId: `${agg.name}${ROUTING_SUFFIX}`,
    slot: aggSlot,
    version: 1,
    parentVersion: null,
    sampleCount: Math.round(summed.sum.count),
    metrics: { contributions: collected.length },
    params: aggParams,
    router: summed.router
  }, signal)
  await waitFor(async () => {
    for (const s of sites) if (!await extrasOf(s).registry.has(published.hash)) return false
    return true
  }, init.timeoutMs, 'every site to hold the summed routing release')
  for (const s of sites) for (const c of contributions) extrasOf(s).held.drop(c.hash)
  log.info('sim.release-1-summed', { aggregator: agg.name, contributions: collected.length, hash: published.hash })
  return { projection: summed.projection, hash: published.hash }
}
