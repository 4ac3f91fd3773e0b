/**
 * DiLoCo (Douillard et al. 2023): each site takes H inner steps, the
 * pseudo-gradient is start - local (our delta), and the outer optimizer is
 * SGD with Nesterov momentum over its (sample-weighted) mean, in PyTorch's
 * formulation:  b = mu b + g;  x = x - lr (g + mu b).
 * The paper's outer lr 0.7 and momentum 0.9 are the defaults. H is carried
 * in the config so the trainer and the round agree on it.
 */
import { z } from 'zod'
import { StrategyConfigError } from '../errors.ts'
import { checkUpdates, decodeVector, encodeVector, weightedMean } from './common.ts'
import type { JsonValue, Strategy } from './types.ts'

export interface DiLoCoConfig {
  kind: 'diloco'
  outerLr: number
  momentum: number
  innerSteps: number
}

const State = z.object({ t: z.number().int().nonnegative(), momentum: z.string() }).strict()

export function createDiLoCo (config: DiLoCoConfig): Strategy {
  const { outerLr, momentum: mu } = config
  const load = (state: JsonValue, n: number): { t: number, b: Float32Array } => {
    if (state === null) return { t: 0, b: new Float32Array(n) }
    const parsed = State.safeParse(state)
    if (!parsed.success) throw new StrategyConfigError(`diloco state is malformed: ${parsed.error.issues[0]?.message ?? 'invalid'}`)
    return { t: parsed.data.t, b: decodeVector(parsed.data.momentum, n, 'momentum') }
  }
  return {
    name: 'diloco',
    aggregate: (updates, global, state) => {
      const sorted = checkUpdates(updates, global)
      const g = weightedMean(sorted)
      const { t, b } = load(state, global.length)
      const next = new Float32Array(global.length)
      for (let i = 0; i < global.length; i++) {
        b[i] = mu * b[i]! + g[i]!
        next[i] = global[i]! - outerLr * (g[i]! + mu * b[i]!)
      }
      return { next, state: { t: t + 1, momentum: encodeVector(b) } }
    }
  }
}
