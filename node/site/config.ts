/**
 * The federation settings a site runs rounds with. Every member of a
 * federation must hold the same settings (strategy, compression, local steps,
 * seed): the round record names the strategy and the seed, and a member whose
 * initial parameters differ is refused by the base hash of its updates.
 */
import { z } from 'zod'
import { CompressionConfigSchema } from '../../coordinator/compression/combined.ts'
import { PrivacySettingsSchema } from '../../coordinator/dp/settings.ts'
import { StrategyConfigSchema } from '../../coordinator/strategies/registry.ts'
import { describeIssues } from '../../protocols/validation.ts'
import { ConfigError } from '../errors.ts'

const ms = z.number().int().positive()

export const FederationSettingsSchema = z.object({
  strategy: StrategyConfigSchema,
  compression: CompressionConfigSchema.default({ kind: 'none' }),
  /** H: local steps each member trains between two rounds. */
  localSteps: z.number().int().positive(),
  /** Share of a round's invited participants whose updates make a quorum. */
  quorumFraction: z.number().gt(0).max(1).default(0.5),
  /** And never fewer than this many updates. */
  minUpdates: z.number().int().positive().default(1),
  /**
   * A coordinator opens a round only when this many members (itself
   * included) are live. Default: a majority of the allowlist, so that a site
   * cut off from the others (or restarted before it reconnects) cannot
   * commit rounds of its own that the majority never sees.
   */
  minParticipants: z.number().int().positive().optional(),
  /** How long a coordinator collects updates before closing with what it has. */
  roundTimeoutMs: ms.default(60_000),
  /** Every live member is greeted this often; a hello answered is a heartbeat. */
  heartbeatIntervalMs: ms.default(1_000),
  /** A member not heard from for this long is not live (and a silent coordinator is replaced). */
  heartbeatTimeoutMs: ms.default(5_000),
  /** How soon a member retries an update the coordinator was not ready for. */
  retryMs: ms.default(250),
  privacy: PrivacySettingsSchema.default({ secureAggregation: { enabled: false }, dp: { mode: 'off', noiseMultiplier: 0, sampleRate: 1 } }),
  /** Round seeds derive from this (random.fork('round/<n>')): the same at every coordinator. */
  seed: z.union([z.number().int(), z.string().min(1).max(256)]).default(0),
  /** Election priority by peer id (higher wins; default 0), e.g. to keep a well-connected site coordinating. */
  priorities: z.record(z.string(), z.number()).default({})
}).strict().refine(s => s.heartbeatTimeoutMs > s.heartbeatIntervalMs, {
  message: 'heartbeatTimeoutMs must be longer than heartbeatIntervalMs, or every member looks dead between two greetings',
  path: ['heartbeatTimeoutMs']
})

export type FederationSettings = z.infer<typeof FederationSettingsSchema>
export type FederationSettingsInput = z.input<typeof FederationSettingsSchema>

export function parseFederationSettings (input: unknown): FederationSettings {
  const parsed = FederationSettingsSchema.safeParse(input)
  if (!parsed.success) throw new ConfigError(`federation settings: ${describeIssues(parsed.error.issues, input).join('; ')}`)
  return parsed.data
}
