/**
 * Routing release 1 through one aggregator, the elected round coordinator
 * (node/federation/global-release.ts has the why): each site makes its
 * release and holds it, signed, for the aggregator; the aggregator fetches
 * and verifies them all over the mesh, sums them and publishes the sum and
 * the projection; the phase ends when every site holds that artifact, and
 * the sites stop serving their contributions. Written against the site
 * agent (sim/agent/types.ts), so it runs the same inline and in child processes.
 */
import type { Logger } from '../coordinator/components.ts'
import type { Projection } from '../coordinator/routing/projection.ts'
import type { SiteAgent } from './agent/types.ts'
import { waitFor } from './moe-helpers.ts'

export interface ReleaseOneInit {
  /** The federation's name: the PCA seed. */
  federation: string
  timeoutMs: number
  signal?: AbortSignal
}

export async function sumReleaseOneAt (sites: SiteAgent[], init: ReleaseOneInit, components: { logger: Logger }): Promise<{ projection: Projection, hash: string }> {
  const elected = (await sites[0]!.ops.status()).coordinator
  const agg = sites.find(s => s.name === elected) ?? sites[0]!
  // Each site's release (charged to its own ledger) is independent of the others': make them at once.
  const contributions = await Promise.all(sites.map(async s => await s.ops.contribute()))
  const published = await agg.ops.aggregate({ contributions, federation: init.federation }, init.signal)
  await waitFor(async () => {
    const held = await Promise.all(sites.map(async s => await s.ops.holds({ hashes: [published.hash] })))
    return held.every(h => h.length === 1)
  }, init.timeoutMs, 'every site to hold the summed routing release')
  await Promise.all(sites.map(async s => { await s.ops.dropHeld() }))
  components.logger.info('sim.release-1-summed', { aggregator: agg.name, contributions: contributions.length, hash: published.hash })
  return published
}
