/**
 * The wire form of a site's routing release (plain JSON numbers), checked
 * with zod. Sizes are checked before anything is parsed or allocated: a
 * release is small (a few components of dimension ~40), and anything far
 * larger is refused outright.
 */
import { z } from 'zod'
import { RoutingInputError } from '../errors.ts'
import { packedLength, type Moments } from './moments.ts'
import type { SiteRelease } from './release.ts'

export interface ReleaseLimits {
  /** Largest moments dimension accepted (the projection's k; 784 for a global release). */
  maxDim: number
  /** Most components per site (labels × 2^cellBits). */
  maxComponents: number
}

export const DEFAULT_RELEASE_LIMITS: ReleaseLimits = { maxDim: 1024, maxComponents: 1024 }

const finite = z.number().refine(Number.isFinite, 'must be finite')

const momentsSchema = z.object({
  dim: z.number().int().positive(),
  count: finite,
  sum: z.array(finite),
  outer: z.array(finite)
}).strict().refine(m => m.sum.length === m.dim && m.outer.length === packedLength(m.dim), 'sum must hold dim values and outer dim·(dim+1)/2')

const releaseSchema = z.object({
  expert: z.number().int().min(0),
  components: z.array(z.object({
    label: z.number().int().min(0),
    cell: z.number().int().min(0),
    moments: momentsSchema
  }).strict())
}).strict()

export type SiteReleaseWire = z.infer<typeof releaseSchema>

function momentsToWire (m: Moments): SiteReleaseWire['components'][number]['moments'] {
  return { dim: m.dim, count: m.count, sum: Array.from(m.sum), outer: Array.from(m.outer) }
}

export function encodeSiteRelease (r: SiteRelease): SiteReleaseWire {
  return { expert: r.expert, components: r.components.map(c => ({ label: c.label, cell: c.cell, moments: momentsToWire(c.moments) })) }
}

/** Validate a release received from a peer. Throws RoutingInputError naming the first problem. */
export function decodeSiteRelease (input: unknown, limits: ReleaseLimits = DEFAULT_RELEASE_LIMITS): SiteRelease {
  // Size check first: refuse oversized arrays before zod walks every number.
  const comps = (input as { components?: unknown } | null)?.components
  if (Array.isArray(comps)) {
    if (comps.length > limits.maxComponents) throw new RoutingInputError(`release has ${comps.length} components, the limit is ${limits.maxComponents}`)
    for (const c of comps) {
      const dim = (c as { moments?: { dim?: unknown } } | null)?.moments?.dim
      if (typeof dim === 'number' && dim > limits.maxDim) throw new RoutingInputError(`release has a component of dimension ${dim}, the limit is ${limits.maxDim}`)
    }
  }
  const parsed = releaseSchema.safeParse(input)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    throw new RoutingInputError(`invalid routing release at ${issue.path.join('.') || '(root)'}: ${issue.message}`)
  }
  return {
    expert: parsed.data.expert,
    components: parsed.data.components.map(c => ({
      label: c.label,
      cell: c.cell,
      moments: { dim: c.moments.dim, count: c.moments.count, sum: Float64Array.from(c.moments.sum), outer: Float64Array.from(c.moments.outer) }
    }))
  }
}
