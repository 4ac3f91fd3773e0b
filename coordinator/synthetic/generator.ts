/**
 * The generator end to end, still pure: raw rows in, synthetic raw rows and
 * a quality report out. (eps, delta) become rho through the CKS20
 * conversion (zcdp.ts); every random draw comes from the injected Random,
 * forked per phase, so one seed fixes the whole run.
 */
import type { Random } from '../components.ts'
import { InvalidArgumentError } from '../errors.ts'
import { decodeRows, encodeRows, type Domain, type RawValue } from './domain.ts'
import { mlEfficacy, type EfficacyResult } from './efficacy.ts'
import { marginalFidelity, privacySanity, sampleWithoutReplacement, type MarginalFidelity, type PrivacySanity } from './quality.ts'
import { fitMst, sampleMst, type MstBudget } from './mst.ts'
import { rhoFromEpsDelta } from './zcdp.ts'

export type Rows = readonly (readonly RawValue[])[]

export interface SynthesizeOptions {
  epsilon: number
  delta: number
  /** Number of synthetic rows to draw. */
  rows: number
  split?: readonly [number, number, number]
  /** Decimals of generated non-integer numerics. */
  decimals?: number
}

export interface Synthesis {
  rows: RawValue[][]
  /** The chosen tree, by column name. */
  tree: [string, string][]
  /** The noisy estimate of the real row count the model was fitted to. */
  estimatedRealRows: number
  budget: MstBudget & { epsilon: number, delta: number }
}

export function synthesize (domain: Domain, real: Rows, options: SynthesizeOptions, random: Random): Synthesis {
  if (!Number.isInteger(options.rows) || options.rows < 1) throw new InvalidArgumentError(`rows must be an integer >= 1, got ${options.rows}`)
  const rho = rhoFromEpsDelta(options.epsilon, options.delta)
  const encoded = encodeRows(domain, real)
  const model = fitMst(encoded, domain.sizes, { rho, ...(options.split === undefined ? {} : { split: options.split }) }, random.fork('fit'))
  const sampled = sampleMst(model, options.rows, random.fork('sample'))
  const name = (k: number): string => domain.columns[k]!.name
  return {
    rows: decodeRows(domain, sampled, random.fork('decode'), options.decimals),
    tree: model.edges.map(([i, j]) => [name(i), name(j)]),
    estimatedRealRows: model.total,
    budget: { ...model.budget, epsilon: options.epsilon, delta: options.delta }
  }
}

/** A seeded split of n row indices into training rows and a held-out share. */
export function splitHoldout (n: number, fraction: number, random: Random): { train: number[], holdout: number[] } {
  if (!(fraction >= 0 && fraction < 1)) throw new InvalidArgumentError(`the holdout fraction must be in [0, 1), got ${fraction}`)
  const k = Math.round(n * fraction)
  const held = new Set(sampleWithoutReplacement(n, k, random))
  const train: number[] = []
  const holdout: number[] = []
  for (let i = 0; i < n; i++) (held.has(i) ? holdout : train).push(i)
  return { train, holdout }
}

export interface Quality {
  fidelity: MarginalFidelity
  /** null without a categorical label column or without a holdout. */
  mlEfficacy: EfficacyResult | null
  privacy: PrivacySanity
}

export function assessQuality (domain: Domain, data: { train: Rows, holdout: Rows, synthetic: Rows }, options: { label?: number, maxQueries?: number }, random: Random): Quality {
  const fidelity = marginalFidelity(domain, encodeRows(domain, data.train), encodeRows(domain, data.synthetic))
  const labelCol = options.label === undefined ? undefined : domain.columns[options.label]
  const efficacy = options.label !== undefined && labelCol?.kind === 'categorical' && data.holdout.length > 0
    ? mlEfficacy(domain, options.label, data.train, data.synthetic, data.holdout)
    : null
  const privacy = privacySanity(domain, data.train, data.synthetic, data.holdout, random.fork('privacy'), options.maxQueries === undefined ? {} : { maxQueries: options.maxQueries })
  return { fidelity, mlEfficacy: efficacy, privacy }
}
