/**
 * The strategy registry: one zod schema per kind (with the defaults and the
 * reasons for them), and a switch that ends in a `never` check, so adding a
 * kind to the union without a factory fails to compile.
 */
import { z } from 'zod'
import { describeIssues } from '../../protocols/validation.ts'
import { StrategyConfigError } from '../errors.ts'
import { createDiLoCo } from './diloco.ts'
import { createFedAdam } from './fedadam.ts'
import { createFedAvg } from './fedavg.ts'
import { createFedYogi } from './fedyogi.ts'
import { createKrum } from './krum.ts'
import { createMedian } from './median.ts'
import { createTrimmedMean } from './trimmed-mean.ts'
import type { Strategy } from './types.ts'

const lr = z.number().positive().finite()
const unit = z.number().min(0).lt(1)

// Reddi et al. 2021 tune the server lr per task; 0.01 with tau 1e-3 is the
// middle of their grid for dense models. beta1 0.9, beta2 0.99 are theirs.
const adaptive = {
  serverLr: lr.default(0.01),
  beta1: unit.default(0.9),
  beta2: unit.default(0.99),
  tau: z.number().positive().finite().default(1e-3)
}

export const StrategyConfigSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('fedavg'), serverLr: lr.default(1) }).strict(),
  z.object({ kind: z.literal('fedadam'), ...adaptive }).strict(),
  z.object({ kind: z.literal('fedyogi'), ...adaptive }).strict(),
  // Douillard et al. 2023: outer lr 0.7, Nesterov momentum 0.9, H = 500 inner steps.
  z.object({ kind: z.literal('diloco'), outerLr: lr.default(0.7), momentum: unit.default(0.9), innerSteps: z.number().int().positive().default(500) }).strict(),
  z.object({ kind: z.literal('median'), serverLr: lr.default(1) }).strict(),
  // beta 0.2 trims one of five sites at each end: one Byzantine site of five.
  z.object({ kind: z.literal('trimmed-mean'), beta: z.number().min(0).lt(0.5).default(0.2), serverLr: lr.default(1) }).strict(),
  z.object({ kind: z.literal('krum'), f: z.number().int().nonnegative().default(1), serverLr: lr.default(1) }).strict(),
  z.object({ kind: z.literal('multi-krum'), f: z.number().int().nonnegative().default(1), m: z.number().int().positive().optional(), serverLr: lr.default(1) }).strict()
])

export type StrategyConfig = z.infer<typeof StrategyConfigSchema>
export type StrategyConfigInput = z.input<typeof StrategyConfigSchema>
export type StrategyKind = StrategyConfig['kind']

export const STRATEGY_KINDS: readonly StrategyKind[] = ['fedavg', 'fedadam', 'fedyogi', 'diloco', 'median', 'trimmed-mean', 'krum', 'multi-krum']

/** Validates a config (defaults filled in) with a named error that says which field is wrong. */
export function parseStrategyConfig (input: unknown): StrategyConfig {
  const result = StrategyConfigSchema.safeParse(input)
  if (!result.success) throw new StrategyConfigError(`invalid strategy config: ${describeIssues(result.error.issues, input).join('; ')}`)
  return result.data
}

export function createStrategy (input: StrategyConfigInput | StrategyConfig): Strategy {
  const config = parseStrategyConfig(input)
  switch (config.kind) {
    case 'fedavg': return createFedAvg(config)
    case 'fedadam': return createFedAdam(config)
    case 'fedyogi': return createFedYogi(config)
    case 'diloco': return createDiLoCo(config)
    case 'median': return createMedian(config)
    case 'trimmed-mean': return createTrimmedMean(config)
    case 'krum':
    case 'multi-krum': return createKrum(config)
    default: return unknownKind(config)
  }
}

function unknownKind (config: never): never {
  throw new StrategyConfigError(`unknown strategy kind '${(config as { kind: string }).kind}'`)
}
