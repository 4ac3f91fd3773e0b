/**
 * Per-federation privacy settings, and the check that they can hold
 * together with the strategy and compression chosen (docs/privacy.md has
 * the table). The order of operations on an update is fixed:
 *   clip (L2, C) -> DP noise -> [compress | quantise to fixed point] -> mask.
 * Noise before compression makes compression post-processing; clipping
 * before masking is what bounds each member's influence on the sum.
 */
import { z } from 'zod'
import { PrivacyConfigError } from '../errors.ts'
import { largestScale, type RingBits } from '../secagg/quantise.ts'

const positive = z.number().positive().finite()

export const PrivacySettingsSchema = z.object({
  /** L2 bound every shared-parameter update is clipped to (needed by DP and by secure aggregation). */
  clipNorm: positive.optional(),
  secureAggregation: z.object({
    enabled: z.boolean().default(false),
    /** Members needed at every stage; default: the smallest integer above 2n/3. */
    threshold: z.number().int().min(2).optional(),
    /** 32 by default; 16 when compression is int8 (quantisation before masking). */
    ringBits: z.union([z.literal(16), z.literal(32)]).optional()
  }).strict().default({ enabled: false }),
  dp: z.object({
    /** 'site': each site adds all the noise; 'distributed': each adds 1/threshold of the variance, under secure aggregation. */
    mode: z.enum(['off', 'site', 'distributed']).default('off'),
    noiseMultiplier: z.number().min(0).finite().default(0),
    /** Probability a site takes part in a round, if sites are sampled secretly; 1 otherwise (no amplification). */
    sampleRate: z.number().gt(0).max(1).default(1)
  }).strict().default({ mode: 'off', noiseMultiplier: 0, sampleRate: 1 }),
  /** Record-level DP-SGD for expert training. */
  expertDpSgd: z.object({
    clipNorm: positive,
    noiseMultiplier: positive,
    microbatchSize: z.number().int().positive().default(1)
  }).strict().optional(),
  budget: z.object({ epsilon: positive, delta: z.number().gt(0).lt(1) }).strict().optional()
}).strict()

export type PrivacySettings = z.infer<typeof PrivacySettingsSchema>

export const ROBUST_STRATEGIES = ['median', 'trimmed-mean', 'krum', 'multi-krum'] as const

export interface CompositionInput {
  privacy: PrivacySettings
  /** Members of the federation (the n of secure aggregation). */
  sites: number
  /** Length of the flattened shared-parameter vector. */
  vectorLength: number
  strategy: { kind: string }
  compression: { kind: string }
}

export interface PrivacyPlan {
  secureAggregation?: { threshold: number, ringBits: RingBits, scale: number }
  /** Std of the noise each site adds per coordinate (0 when DP is off). */
  noiseStdPerSite: number
  /** What the accountant charges per round: one step of the Gaussian mechanism with this multiplier and rate. */
  accounting?: { noiseMultiplier: number, sampleRate: number }
}

function fail (reason: string): never {
  throw new PrivacyConfigError(reason)
}

/** Checks that the settings can hold together; returns the resolved plan or throws PrivacyConfigError with the reason. */
export function checkPrivacyComposition (input: CompositionInput): PrivacyPlan {
  const { privacy: p, sites: n, strategy, compression } = input
  const sa = p.secureAggregation
  const dp = p.dp
  const dpOn = dp.mode !== 'off'
  if (dpOn && p.clipNorm === undefined) fail(`dp.mode '${dp.mode}' needs privacy.clipNorm: without a norm bound the Gaussian noise bounds nothing`)
  if (dpOn && !(dp.noiseMultiplier > 0)) fail(`dp.mode '${dp.mode}' needs dp.noiseMultiplier > 0`)
  if ((dpOn || p.expertDpSgd !== undefined) && p.budget === undefined) fail('differential privacy is on but privacy.budget (epsilon, delta) is not set: the ledger needs a budget to enforce')
  if (dp.mode === 'distributed' && !sa.enabled) fail("dp.mode 'distributed' splits the noise across sites, which protects only the sum: it needs secureAggregation.enabled so that no single noised-too-little update is ever seen; use mode 'site' otherwise")

  const plan: PrivacyPlan = { noiseStdPerSite: 0 }
  if (sa.enabled) {
    if (p.clipNorm === undefined) fail('secure aggregation needs privacy.clipNorm: updates are clipped before masking so that the fixed-point sum cannot overflow and no member can dominate it')
    if ((ROBUST_STRATEGIES as readonly string[]).includes(strategy.kind)) {
      fail(`strategy '${strategy.kind}' needs to see each member's update, which secure aggregation hides; under secure aggregation robustness comes only from the norm bound (updates clipped to clipNorm before masking). Use fedavg, fedadam, fedyogi or diloco, or turn secure aggregation off`)
    }
    if (compression.kind === 'topk' || compression.kind === 'topk-int8') {
      fail(`compression '${compression.kind}' sends a different sparse support from each member, and masks make every vector dense: it cannot be combined with secure aggregation. Use compression 'int8' (quantisation before masking, 16-bit ring) or 'none'`)
    }
    if (n < 3) fail(`secure aggregation needs at least 3 sites (the sum of 2 reveals each to the other); the federation has ${n}`)
    const threshold = sa.threshold ?? Math.floor((2 * n) / 3) + 1
    if (threshold <= n / 2 || threshold > n) fail(`secureAggregation.threshold must satisfy n/2 < threshold <= n (n = ${n}), got ${threshold}`)
    const ringBits: RingBits = sa.ringBits ?? (compression.kind === 'int8' ? 16 : 32)
    const scale = largestScale(n, p.clipNorm, ringBits)
    if (!(scale > 0)) fail(`${n} sites cannot share a ${ringBits}-bit ring: even scale 1 overflows; use ringBits 32`)
    // A coordinate of a clipped update is typically C / sqrt(d); the rounding
    // step is 1 / scale. Coarser than 1/16 of that, rounding swamps the signal.
    const typical = p.clipNorm / Math.sqrt(input.vectorLength)
    if (1 / scale > typical / 16) {
      fail(`a ${ringBits}-bit ring for ${n} sites and ${input.vectorLength} values rounds in steps of ${(1 / scale).toPrecision(3)}, more than 1/16 of a typical coordinate (${typical.toPrecision(3)}): the sum would be mostly rounding. Use ringBits 32 (compression 'none')`)
    }
    plan.secureAggregation = { threshold, ringBits, scale }
  }
  if (dpOn) {
    const shares = dp.mode === 'distributed' ? plan.secureAggregation!.threshold : 1
    plan.noiseStdPerSite = dp.noiseMultiplier * p.clipNorm! / Math.sqrt(shares)
    plan.accounting = { noiseMultiplier: dp.noiseMultiplier, sampleRate: dp.sampleRate }
  }
  return plan
}
