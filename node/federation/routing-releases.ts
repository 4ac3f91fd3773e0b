/**
 * Both sides of the density router (docs/routing.md, steps 1, 2 and 4).
 *
 * Site side: release 1 (the site's clipped, noised moments of its raw rows)
 * and release 2 (per label and sign cell, moments of its projected rows). Each
 * is charged to the site's privacy ledger before it is handed back: a release
 * over budget is refused with the ledger's PrivacyBudgetExceededError and
 * nothing is returned. The cost is zCDP rho (both releases together meet the
 * config's (epsilon, delta)); the ledger composes it with everything else.
 *
 * Member side: the shared PCA projection from the sum of all releases 1
 * (seeded from the federation's name, so every member gets the same basis
 * and the same cells), the density router from all releases 2 (validated with
 * zod, as received), and gates for a batch with opt-out.
 */
import { z } from 'zod'
import { createSeededRandom, type Random } from '../../coordinator/components.ts'
import type { RoutingConfig } from '../../coordinator/routing/config.ts'
import { noiseForBudget, rhoOfRelease } from '../../coordinator/routing/dp.ts'
import { addMoments, packedLength, type Moments } from '../../coordinator/routing/moments.ts'
import { projectionFromMoments, type Projection } from '../../coordinator/routing/projection.ts'
import { releaseComponents, releaseGlobalMoments, type SiteRelease } from '../../coordinator/routing/release.ts'
import { buildDensityRouter, gatesFromScores, scoreRows, type DensityRouter } from '../../coordinator/routing/router.ts'
import { DEFAULT_RELEASE_LIMITS, decodeSiteRelease, type ReleaseLimits } from '../../coordinator/routing/schema.ts'
import { FederationError, PrivacyBudgetExceededError } from '../errors.ts'
import type { PrivacyLedger } from '../privacy/ledger.ts'

export interface ReleaseComponents {
  /** The site's random source; releases fork 'routing/global' and 'routing/components' from it. */
  random: Random
  /** The site's ledger; null only for runs without accounting (exact statistics, benchmarks). */
  ledger: PrivacyLedger | null
}

export interface ReleaseOptions {
  /** Ledger label prefix, e.g. the federation's name. */
  label?: string
  signal?: AbortSignal
}

/** zCDP rho of each release under a config (Infinity for exact statistics). */
export function releaseRho (config: RoutingConfig): { global: number, components: number } {
  if (config.privacy === null) return { global: Infinity, components: Infinity }
  const z = noiseForBudget(config.privacy.epsilon, config.privacy.delta, config.privacy.shares)
  return { global: rhoOfRelease(z.global), components: rhoOfRelease(z.components) }
}

/** Refuses early (before any work) when the ledger cannot take the charge; returns the charge to record after the work. */
async function precheck (config: RoutingConfig, which: 'global' | 'components', what: string, components: ReleaseComponents): Promise<{ kind: 'routing', label: string, rho: number } | null> {
  const { ledger } = components
  if (ledger === null) return null
  if (config.privacy === null) throw new FederationError(`${what}: exact routing statistics carry no DP guarantee, so they cannot be charged to a privacy ledger; use a config with privacy or no ledger`)
  const charge = { kind: 'routing' as const, label: what, rho: releaseRho(config)[which] }
  const p = await ledger.canCharge(charge)
  if (!p.ok) throw new PrivacyBudgetExceededError(`release '${what}' (routing) refused: ${p.reason ?? 'over budget'}; nothing was recorded or sent`)
  return charge
}

/** Release 1: the site's noised global moments (n x dim raw rows), charged before they are returned. */
export async function releaseSiteGlobal (site: { rows: ArrayLike<number>, n: number, dim: number }, config: RoutingConfig, components: ReleaseComponents, options: ReleaseOptions = {}): Promise<Moments> {
  const what = `${options.label ?? 'routing'}/release-1 global moments`
  const charge = await precheck(config, 'global', what, components)
  options.signal?.throwIfAborted()
  const m = releaseGlobalMoments(site.rows, site.n, site.dim, config, components.random.fork('routing/global'))
  options.signal?.throwIfAborted()
  if (charge !== null) await components.ledger!.charge(charge)
  return m
}

/** Release 2: the site's per (label, cell) components in the shared projection, charged before they are returned. */
export async function releaseSiteComponents (
  site: { expert: number, rows: ArrayLike<number>, labels: ArrayLike<number>, n: number },
  projection: Projection, config: RoutingConfig, components: ReleaseComponents, options: ReleaseOptions = {}
): Promise<SiteRelease> {
  const what = `${options.label ?? 'routing'}/release-2 components`
  const charge = await precheck(config, 'components', what, components)
  options.signal?.throwIfAborted()
  const r = releaseComponents(site, projection, config, components.random.fork('routing/components'))
  options.signal?.throwIfAborted()
  if (charge !== null) await components.ledger!.charge(charge)
  return r
}

/** Every member derives the PCA basis from this seed, so all agree on the projection and the cells. */
export const pcaSeed = (federation: string): string => `routing/pca/${federation}`

/** The shared projection from every site's release 1 (only their sum is used). */
export function sharedProjection (globals: readonly Moments[], config: RoutingConfig, federation: string): Projection {
  if (globals.length === 0) throw new FederationError('the projection needs at least one site\'s global moments')
  return projectionFromMoments(addMoments(globals), config.components, config.clipProjected, createSeededRandom(pcaSeed(federation)))
}

/** The density router from all sites' releases 2 as received (wire JSON), each validated before use. */
export function buildMemberRouter (projection: Projection, received: readonly unknown[], experts: number, config: RoutingConfig, limits: ReleaseLimits = DEFAULT_RELEASE_LIMITS): DensityRouter {
  const releases = received.map(r => decodeSiteRelease(r, limits))
  return buildDensityRouter(projection, releases, experts, config)
}

export interface GateOptions {
  /** Experts per row (default 2). */
  topK?: number
  /** Expert slots left out of this assembly: gate exactly 0. */
  optOut?: ReadonlySet<number>
}

/** n x E gates for n raw rows: softmax over each row's top-k allowed density scores. */
export function densityGates (router: DensityRouter, rows: ArrayLike<number>, n: number, options: GateOptions = {}): Float32Array {
  return gatesFromScores(scoreRows(router, rows, n), n, router.experts, { topK: options.topK ?? 2, ...(options.optOut !== undefined ? { optOut: options.optOut } : {}) })
}

/** The moments as a float32 wire would carry them (4 bytes per value): what members receive. */
export function toFloat32Moments (m: Moments): Moments {
  return { dim: m.dim, count: Math.fround(m.count), sum: Float64Array.from(Float32Array.from(m.sum)), outer: Float64Array.from(Float32Array.from(m.outer)) }
}

export function toFloat32Release (r: SiteRelease): SiteRelease {
  return { expert: r.expert, components: r.components.map(c => ({ label: c.label, cell: c.cell, moments: toFloat32Moments(c.moments) })) }
}

/** Bytes of moments as float32 values: count, sum, packed outer. */
export const momentsBytes = (m: Moments): number => 4 * (1 + m.dim + packedLength(m.dim))

/** Bytes of a release 2 as float32 (moments only; label and cell ride in the key). */
export const siteReleaseBytes = (r: SiteRelease): number => r.components.reduce((a, c) => a + momentsBytes(c.moments), 0)

const finite = z.number().refine(Number.isFinite, 'must be finite')
const GlobalWire = z.object({ dim: z.number().int().positive(), count: finite, sum: z.array(finite), outer: z.array(finite) }).strict()

/** Release 1 as received (plain JSON numbers): size checked first, then zod. */
export function decodeGlobalMoments (input: unknown, maxDim = 4096): Moments {
  const dim = (input as { dim?: unknown } | null)?.dim
  if (typeof dim !== 'number' || !Number.isInteger(dim) || dim < 1 || dim > maxDim) throw new FederationError(`global moments must have an integer dim in 1..${maxDim}, got ${String(dim)}`)
  const sum = (input as { sum?: unknown }).sum
  const outer = (input as { outer?: unknown }).outer
  if (!Array.isArray(sum) || sum.length !== dim || !Array.isArray(outer) || outer.length !== packedLength(dim)) throw new FederationError(`global moments of dim ${dim} need ${dim} sums and ${packedLength(dim)} packed outer products`)
  const parsed = GlobalWire.safeParse(input)
  if (!parsed.success) throw new FederationError(`invalid global moments at ${parsed.error.issues[0]!.path.join('.') || '(root)'}: ${parsed.error.issues[0]!.message}`)
  return { dim, count: parsed.data.count, sum: Float64Array.from(parsed.data.sum), outer: Float64Array.from(parsed.data.outer) }
}

export function encodeGlobalMoments (m: Moments): { dim: number, count: number, sum: number[], outer: number[] } {
  return { dim: m.dim, count: m.count, sum: Array.from(m.sum), outer: Array.from(m.outer) }
}
