/**
 * Model specs: small typed configs, zod-validated at every boundary (config
 * files, peers' hello messages, artifact headers). A spec plus its seed fully
 * determines the initial parameters, so two sites with the same specHash start
 * from the same weights and can exchange any parameter by name.
 */
import { createHash } from 'node:crypto'
import { z } from 'zod'
import { describeIssues } from '../../protocols/validation.ts'
import { ModelSpecError } from '../errors.ts'

const dim = (max: number): z.ZodNumber => z.number().int().min(1).max(max)
const seed = z.number().int().min(0).max(0xffffffff)

/** The MoE classifier: trunk D->d (GELU), router d->E (top-k), E residual FFN experts d->f->d, head d->C. */
export const MoeSpec = z.object({
  kind: z.literal('moe').default('moe'),
  inputDim: dim(1 << 20),
  width: dim(8192),
  expertHidden: dim(32768),
  experts: dim(256),
  // Top-1 is Switch routing (gate = router probability, so the router learns
  // from the task loss); top-2 renormalises the two gates to sum to 1 (Mixtral).
  topK: z.literal([1, 2]),
  classes: z.number().int().min(2).max(100_000),
  seed,
  // Router weights start this many times smaller than a plain layer's, so
  // routing starts near uniform and the balance loss has room to act (Switch).
  routerInitScale: z.number().positive().max(10).default(0.1)
}).strict().refine(s => s.topK <= s.experts, { message: 'topK must not exceed experts', path: ['topK'] })
export type MoeSpec = z.infer<typeof MoeSpec>
export type MoeSpecInput = z.input<typeof MoeSpec>

/**
 * The dense baseline: the MoE without routing. Trunk and head as in the MoE,
 * one residual FFN d->hidden->d; `denseSpecFor` picks hidden so the active
 * parameter count matches an MoE's.
 */
export const DenseSpec = z.object({
  kind: z.literal('dense').default('dense'),
  inputDim: dim(1 << 20),
  width: dim(8192),
  hidden: dim(65536),
  classes: z.number().int().min(2).max(100_000),
  seed
}).strict()
export type DenseSpec = z.infer<typeof DenseSpec>

/** A plain ReLU MLP; the FedAvg paper's 2NN is hidden [200, 200] on 784 inputs. */
export const MlpSpec = z.object({
  kind: z.literal('mlp').default('mlp'),
  inputDim: dim(1 << 20),
  hidden: z.array(dim(65536)).min(1).max(16),
  classes: z.number().int().min(2).max(100_000),
  seed
}).strict()
export type MlpSpec = z.infer<typeof MlpSpec>

export type ModelSpec = MoeSpec | DenseSpec | MlpSpec

/** The 2NN of McMahan et al. (2017): 784-200-200-10, ReLU. */
export function mlp2nnSpec (seedValue = 0): MlpSpec {
  return { kind: 'mlp', inputDim: 784, hidden: [200, 200], classes: 10, seed: seedValue }
}

function parseWith<T> (schema: z.ZodType<T>, input: unknown, what: string): T {
  const r = schema.safeParse(input)
  if (r.success) return r.data
  // The same wording as every other config error: field path, what was expected, what was given.
  throw new ModelSpecError(`invalid ${what} spec: ${describeIssues(r.error.issues, input).join('; ')}`)
}

export function parseMoeSpec (input: unknown): MoeSpec {
  return parseWith(MoeSpec, input, 'MoE')
}

/** Any model spec, told apart by `kind` (default 'moe'). */
export function parseModelSpec (input: unknown): ModelSpec {
  const kind = typeof input === 'object' && input !== null && 'kind' in input ? (input as { kind: unknown }).kind : 'moe'
  switch (kind) {
    case 'moe': return parseWith(MoeSpec, input, 'MoE')
    case 'dense': return parseWith(DenseSpec, input, 'dense')
    case 'mlp': return parseWith(MlpSpec, input, 'MLP')
    default: throw new ModelSpecError(`invalid model spec: unknown kind ${JSON.stringify(kind)} (expected 'moe', 'dense' or 'mlp')`)
  }
}

/** JSON with object keys sorted at every level: one spelling per value. */
export function canonicalJson (value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).filter(k => (value as Record<string, unknown>)[k] !== undefined).sort()
    return `{${keys.map(k => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`
  }
  return JSON.stringify(value)
}

/**
 * sha256 hex of the canonical JSON of the parsed spec (defaults filled in), so
 * `{ topK: 2, ... }` and the same spec with defaults spelled out hash alike.
 */
export function specHash (spec: unknown): string {
  return createHash('sha256').update(canonicalJson(parseModelSpec(spec))).digest('hex')
}
