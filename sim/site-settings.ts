/**
 * What every site of a simulated federation is configured with: the site
 * runtime's settings (heartbeats sized for a fleet on one machine), the MoE
 * spec and each site's expert slot.
 */
import { recipeSpec } from '../node/federation/recipe.ts'
import type { MoeSpec } from '../node/model/spec.ts'
import type { FederationSettingsInput } from '../node/site/config.ts'
import { TopologyError } from './errors.ts'
import { CROWDED_FLEET_SITES } from './fleet.ts'
import { buildSchedule } from './schedule.ts'
import { expertCount, type Topology } from './topology.ts'

/**
 * Greetings per second a crowded fleet's machine spends on presence. Each greeting is a new
 * stream (multistream-select, Noise, yamux, pnet, a hello each way); at 48 inline sites the old
 * 50 ms × N rule meant 940 a second, which saturated the loop: the final expert exchange took
 * 262 s instead of 10 s. A member that disconnects leaves the live view at once (node/site/presence.ts),
 * so the long timeout this gives (161 s at 64 sites) does not slow the notice of a crash.
 */
const CROWDED_GREETINGS_PER_S = 200
const heartbeatMs = (sites: number): number => sites <= CROWDED_FLEET_SITES
  ? 500
  : Math.max(500, Math.round(1000 * sites * (sites - 1) / CROWDED_GREETINGS_PER_S))

/** The site runtime's settings for a topology's federation (every site gets the same). */
export function siteSettings (topology: Topology): FederationSettingsInput {
  const f = topology.federation
  const late = buildSchedule(topology).lateJoiners.size
  return {
    strategy: f.strategy,
    compression: f.compression,
    localSteps: f.localSteps,
    quorumFraction: f.quorum,
    minParticipants: Math.max(1, Math.ceil(f.quorum * (topology.sites.length - late))),
    roundTimeoutMs: Math.round(f.roundTimeoutS * 1000),
    // Every site heartbeats every other: N(N-1) greetings per interval. Up to 10 sites every 500 ms; beyond, the
    // interval grows as N(N-1) so the machine's greetings stay at 200 a second (5 s at 32 sites, 20 s at 64).
    heartbeatIntervalMs: heartbeatMs(topology.sites.length),
    heartbeatTimeoutMs: 8 * heartbeatMs(topology.sites.length),
    retryMs: 100,
    privacy: f.privacy,
    seed: topology.seed
  }
}

export function specFor (topology: Topology): MoeSpec {
  const m = topology.federation.model
  return recipeSpec({ inputDim: m.inputDim, classes: m.classes, experts: expertCount(topology), seed: m.seed, width: m.width, expertHidden: m.expertHidden, topK: m.topK })
}

/** Each site's expert slot: the one it owns, else its index. */
export function slotsOf (topology: Topology): number[] {
  return topology.sites.map((s, i) => {
    if (s.experts.length > 1) throw new TopologyError(`sites[${i}].experts: the simulator's MoE gives each site one expert, '${s.name}' owns ${s.experts.length}`)
    return s.experts[0] ?? i
  })
}
