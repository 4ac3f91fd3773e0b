/**
 * Differential privacy for released moments: the Gaussian mechanism, with
 * the budget accounted in zero-concentrated DP (Bun & Steinke 2016), where
 * Gaussian releases compose by adding their rho.
 *
 * One record changes a site's moments by at most 1 (count), C (sum, L2) and
 * C² (Σ x xᵀ: ‖x xᵀ‖_F = ‖x‖² ≤ C², and the packed upper triangle is a subset
 * of its entries). Noise of std z·Δ on a query costs rho = 1 / (2 z²).
 * Within one release the components partition the records (one label and one
 * cell per record), so they compose in parallel: a record pays once.
 */
import type { Random } from '../components.ts'
import { RoutingInputError } from '../errors.ts'
import { type Moments } from './moments.ts'

/** Noise multipliers z (std = z × sensitivity) for the three queries of a release. */
export interface NoiseMultipliers { count: number, sum: number, outer: number }

/** Shares of the total rho spent on each query of each release; they must sum to 1. */
export interface BudgetShares {
  global: { count: number, sum: number, outer: number }
  components: { count: number, sum: number, outer: number }
}

export const NO_NOISE: NoiseMultipliers = { count: 0, sum: 0, outer: 0 }

/** The largest rho whose zCDP guarantee implies (epsilon, delta)-DP: rho + 2·sqrt(rho·ln(1/delta)) = epsilon. */
export function rhoForEpsilon (epsilon: number, delta: number): number {
  if (!(epsilon > 0) || !(delta > 0 && delta < 1)) throw new RoutingInputError(`need epsilon > 0 and 0 < delta < 1, got epsilon=${epsilon} delta=${delta}`)
  const a = Math.log(1 / delta)
  const x = Math.sqrt(a + epsilon) - Math.sqrt(a)
  return x * x
}

/** (epsilon, delta)-DP implied by rho-zCDP. */
export function epsilonForRho (rho: number, delta: number): number {
  if (!(rho >= 0) || !(delta > 0 && delta < 1)) throw new RoutingInputError(`need rho >= 0 and 0 < delta < 1, got rho=${rho} delta=${delta}`)
  return rho + 2 * Math.sqrt(rho * Math.log(1 / delta))
}

/** Noise multipliers for both releases, spending `shares` of the rho that meets (epsilon, delta). */
export function noiseForBudget (epsilon: number, delta: number, shares: BudgetShares): { global: NoiseMultipliers, components: NoiseMultipliers } {
  const parts = [shares.global, shares.components].flatMap(s => [s.count, s.sum, s.outer])
  const total = parts.reduce((a, b) => a + b, 0)
  if (parts.some(p => !(p > 0)) || Math.abs(total - 1) > 1e-9) throw new RoutingInputError(`budget shares must be positive and sum to 1, got ${parts.join(', ')}`)
  const rho = rhoForEpsilon(epsilon, delta)
  const z = (share: number): number => Math.sqrt(1 / (2 * share * rho))
  const of = (s: BudgetShares['global']): NoiseMultipliers => ({ count: z(s.count), sum: z(s.sum), outer: z(s.outer) })
  return { global: of(shares.global), components: of(shares.components) }
}

/** rho spent by one release noised with multipliers z (Infinity when any is 0: that query is exact). */
export function rhoOfRelease (z: NoiseMultipliers): number {
  return [z.count, z.sum, z.outer].reduce((acc, v) => acc + (v > 0 ? 1 / (2 * v * v) : Infinity), 0)
}

/**
 * The releasable copy of moments whose rows were clipped to clipNorm: Gaussian
 * noise with std z·Δ on every entry. The input is not modified.
 */
export function releaseMoments (m: Moments, clipNorm: number, z: NoiseMultipliers, random: Random): Moments {
  if (!(clipNorm > 0)) throw new RoutingInputError(`clip norm must be positive, got ${clipNorm}`)
  if (![z.count, z.sum, z.outer].every(v => v >= 0 && Number.isFinite(v))) throw new RoutingInputError(`noise multipliers must be finite and >= 0, got ${JSON.stringify(z)}`)
  const sumStd = z.sum * clipNorm
  const outerStd = z.outer * clipNorm * clipNorm
  return {
    dim: m.dim,
    count: m.count + (z.count > 0 ? z.count * random.normal() : 0),
    sum: m.sum.map(v => sumStd > 0 ? v + sumStd * random.normal() : v),
    outer: m.outer.map(v => outerStd > 0 ? v + outerStd * random.normal() : v)
  }
}
