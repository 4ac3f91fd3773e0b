/**
 * What a site releases for routing, and nothing more:
 *   release 1 (global): moments of its raw rows, clipped, noised; the
 *     federation sums them into one PCA basis (projection.ts);
 *   release 2 (components): for each of its labels and each cell of the
 *     projected space, moments of its projected rows, clipped, noised.
 * Rows never leave; labels only as component keys.
 */
import type { Random } from '../components.ts'
import { RoutingInputError } from '../errors.ts'
import type { RoutingConfig } from './config.ts'
import { NO_NOISE, noiseForBudget, releaseMoments, type NoiseMultipliers } from './dp.ts'
import { rowMoments, type Moments } from './moments.ts'
import { cellOf, project, type Projection } from './projection.ts'

export interface ComponentRelease {
  label: number
  cell: number
  moments: Moments
}

export interface SiteRelease {
  /** Index of the site's expert in the assembled MoE (the router's column). */
  expert: number
  components: ComponentRelease[]
}

function noiseOf (config: RoutingConfig): { global: NoiseMultipliers, components: NoiseMultipliers } {
  if (config.privacy === null) return { global: NO_NOISE, components: NO_NOISE }
  return noiseForBudget(config.privacy.epsilon, config.privacy.delta, config.privacy.shares)
}

/** Release 1: the site's clipped, noised moments of its raw rows (n × dim). */
export function releaseGlobalMoments (rows: ArrayLike<number>, n: number, dim: number, config: RoutingConfig, random: Random): Moments {
  return releaseMoments(rowMoments(rows, n, dim, config.clipInput), config.clipInput, noiseOf(config).global, random)
}

/** Release 2: per (label, cell) moments of the site's projected rows. Labels are integers >= 0. */
export function releaseComponents (
  site: { expert: number, rows: ArrayLike<number>, labels: ArrayLike<number>, n: number },
  projection: Projection,
  config: RoutingConfig,
  random: Random
): SiteRelease {
  const { expert, rows, labels, n } = site
  if (!Number.isInteger(expert) || expert < 0) throw new RoutingInputError(`expert index must be an integer >= 0, got ${expert}`)
  if (labels.length !== n) throw new RoutingInputError(`${labels.length} labels for ${n} rows`)
  if (config.cellBits < 0 || config.cellBits > projection.dim || !Number.isInteger(config.cellBits)) throw new RoutingInputError(`cellBits must be an integer in 0..${projection.dim}, got ${config.cellBits}`)
  const z = project(projection, rows, n)
  const k = projection.dim
  const cells = new Int32Array(n)
  for (let r = 0; r < n; r++) cells[r] = cellOf(z, r, k, config.cellBits)
  const present = [...new Set(Array.from(labels))].sort((a, b) => a - b)
  for (const l of present) if (!Number.isInteger(l) || l < 0) throw new RoutingInputError(`labels must be integers >= 0, got ${l}`)
  const noise = noiseOf(config).components
  const components: ComponentRelease[] = []
  // Every (label, cell) pair is released, empty or not: which cells a site has is itself information.
  for (const label of present) {
    for (let cell = 0; cell < 1 << config.cellBits; cell++) {
      const m = rowMoments(z, n, k, config.clipProjected, r => labels[r] === label && cells[r] === cell)
      components.push({ label, cell, moments: releaseMoments(m, config.clipProjected, noise, random) })
    }
  }
  return { expert, components }
}
