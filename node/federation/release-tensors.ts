/**
 * Routing releases as `router.*` tensors, so they travel inside a site's
 * signed expert artifact (node/experts/artifact.ts) and inherit its
 * provenance: the hash, the Ed25519 signature, the member check. Release 1
 * (the site's noised global moments) and release 2 (its noised per label and
 * cell moments in the shared projection) each have a fixed tensor layout;
 * decoding checks every shape and value before anything is used, then hands
 * release 2 to coordinator/routing's own validator.
 */
import { decodeSiteRelease, type ReleaseLimits, DEFAULT_RELEASE_LIMITS } from '../../coordinator/routing/schema.ts'
import { packedLength, type Moments } from '../../coordinator/routing/moments.ts'
import type { SiteRelease } from '../../coordinator/routing/release.ts'
import type { Projection } from '../../coordinator/routing/projection.ts'
import type { Tensor, TensorMap } from '../../protocols/tensors.ts'
import { FederationError } from '../errors.ts'

const G_COUNT = 'router.global.count'
const G_SUM = 'router.global.sum'
const G_OUTER = 'router.global.outer'
const C_META = 'router.components.meta'
const C_SUM = 'router.components.sum'
const C_OUTER = 'router.components.outer'

const t = (shape: number[], data: ArrayLike<number>): Tensor => ({ shape, data: Float32Array.from(data) })

export function globalMomentsToTensors (m: Moments): TensorMap {
  return new Map([
    [G_COUNT, t([1], [m.count])],
    [G_OUTER, t([m.outer.length], m.outer)],
    [G_SUM, t([m.dim], m.sum)]
  ])
}

export function hasGlobalMoments (router: TensorMap): boolean {
  return router.has(G_COUNT)
}

export function globalMomentsFromTensors (router: TensorMap, maxDim = DEFAULT_RELEASE_LIMITS.maxDim): Moments {
  const count = router.get(G_COUNT)
  const sum = router.get(G_SUM)
  const outer = router.get(G_OUTER)
  if (count === undefined || sum === undefined || outer === undefined) throw new FederationError('the artifact carries no routing release 1 (router.global.*)')
  const dim = sum.data.length
  if (count.data.length !== 1 || dim < 1 || dim > maxDim || outer.data.length !== packedLength(dim)) {
    throw new FederationError(`routing release 1 has inconsistent shapes: sum ${dim}, outer ${outer.data.length} (want ${packedLength(dim)})`)
  }
  for (const v of [count.data, sum.data, outer.data]) if (!v.every(Number.isFinite)) throw new FederationError('routing release 1 holds a value that is not finite')
  return { dim, count: count.data[0]!, sum: Float64Array.from(sum.data), outer: Float64Array.from(outer.data) }
}

export function componentsToTensors (r: SiteRelease): TensorMap {
  const m = r.components.length
  const k = r.components[0]?.moments.dim ?? 0
  const meta = new Float32Array(m * 3)
  const sum = new Float32Array(m * k)
  const outer = new Float32Array(m * packedLength(k))
  r.components.forEach((c, i) => {
    if (c.moments.dim !== k) throw new FederationError(`component ${i} has dimension ${c.moments.dim}, the others ${k}`)
    meta.set([c.label, c.cell, c.moments.count], i * 3)
    sum.set(c.moments.sum, i * k)
    outer.set(c.moments.outer, i * packedLength(k))
  })
  return new Map([
    [C_META, { shape: [m, 3], data: meta }],
    [C_OUTER, { shape: [m, packedLength(k)], data: outer }],
    [C_SUM, { shape: [m, k], data: sum }]
  ])
}

export function hasComponents (router: TensorMap): boolean {
  return router.has(C_META)
}

/** Release 2 of the expert in `expert`'s slot, validated by coordinator/routing's decoder. */
export function componentsFromTensors (router: TensorMap, expert: number, limits: ReleaseLimits = DEFAULT_RELEASE_LIMITS): SiteRelease {
  const meta = router.get(C_META)
  const sum = router.get(C_SUM)
  const outer = router.get(C_OUTER)
  if (meta === undefined || sum === undefined || outer === undefined) throw new FederationError('the artifact carries no routing release 2 (router.components.*)')
  const m = meta.shape[0] ?? 0
  const k = sum.shape[1] ?? 0
  if (meta.shape.length !== 2 || sum.shape.length !== 2 || outer.shape.length !== 2 || meta.shape[1] !== 3 || sum.shape[0] !== m || outer.shape[0] !== m || outer.shape[1] !== packedLength(k) ||
    meta.data.length !== m * 3 || sum.data.length !== m * k || outer.data.length !== m * packedLength(k)) {
    throw new FederationError(`routing release 2 has inconsistent shapes: meta [${meta.shape.join(', ')}], sum [${sum.shape.join(', ')}], outer [${outer.shape.join(', ')}]`)
  }
  const p = packedLength(k)
  const wire = {
    expert,
    components: Array.from({ length: m }, (_, i) => ({
      label: meta.data[i * 3]!,
      cell: meta.data[i * 3 + 1]!,
      moments: { dim: k, count: meta.data[i * 3 + 2]!, sum: Array.from(sum.data.subarray(i * k, (i + 1) * k)), outer: Array.from(outer.data.subarray(i * p, (i + 1) * p)) }
    }))
  }
  return decodeSiteRelease(wire, limits)
}


const P_MEAN = 'router.projection.mean'
const P_BASIS = 'router.projection.basis'
const P_CLIP = 'router.projection.clip'

/**
 * The shared projection as tensors. Every member rounds its projection
 * through float32 (`roundTripProjection`) before using it, so a member that
 * computed the basis and one that received it use bit-identical coordinates.
 */
export function projectionToTensors (p: Projection): TensorMap {
  return new Map([
    [P_BASIS, t([p.inputDim, p.dim], p.basis)],
    [P_CLIP, t([1], [p.clipNorm])],
    [P_MEAN, t([p.inputDim], p.mean)]
  ])
}

export function hasProjection (router: TensorMap): boolean {
  return router.has(P_BASIS)
}

export function projectionFromTensors (router: TensorMap, maxInputDim = 1 << 20): Projection {
  const mean = router.get(P_MEAN)
  const basis = router.get(P_BASIS)
  const clip = router.get(P_CLIP)
  if (mean === undefined || basis === undefined || clip === undefined) throw new FederationError('the artifact carries no routing projection (router.projection.*)')
  const inputDim = mean.data.length
  const dim = basis.shape[1] ?? 0
  // The clip norm bounds every projected row: it must be a finite positive number, not Infinity.
  if (inputDim < 1 || inputDim > maxInputDim || basis.shape.length !== 2 || basis.shape[0] !== inputDim || dim < 1 || dim > inputDim || basis.data.length !== inputDim * dim ||
    clip.data.length !== 1 || !(clip.data[0]! > 0 && clip.data[0]! < Infinity)) {
    throw new FederationError(`routing projection has inconsistent shapes or clip: mean ${inputDim}, basis [${basis.shape.join(', ')}], clip ${String(clip.data[0])}`)
  }
  if (!mean.data.every(Number.isFinite) || !basis.data.every(Number.isFinite)) throw new FederationError('routing projection holds a value that is not finite')
  return { inputDim, dim, mean: Float64Array.from(mean.data), basis: Float64Array.from(basis.data), clipNorm: clip.data[0]! }
}

export function roundTripProjection (p: Projection): Projection {
  return projectionFromTensors(projectionToTensors(p))
}
