/**
 * The shared body of FedAdam and FedYogi (Reddi et al. 2021, "Adaptive
 * Federated Optimization", Algorithm 2). With our convention g = mean(delta)
 * = -Delta_t of the paper:
 *   m = beta1 m + (1 - beta1) g
 *   v = beta2 v + (1 - beta2) g^2                       (Adam)
 *   v = v - (1 - beta2) g^2 sign(v - g^2)               (Yogi)
 *   x = x - eta m / (sqrt(v) + tau)
 * v starts at tau^2, as the paper asks (v_{-1} >= tau^2); no bias correction,
 * as in the paper. g is the sample-weighted mean, as FedAvg's.
 */
import { z } from 'zod'
import { StrategyConfigError } from '../errors.ts'
import { checkUpdates, decodeVector, encodeVector, weightedMean } from './common.ts'
import type { JsonValue, Strategy } from './types.ts'

export interface AdaptiveConfig {
  serverLr: number
  beta1: number
  beta2: number
  tau: number
}

const State = z.object({ t: z.number().int().nonnegative(), m: z.string(), v: z.string() }).strict()

export function createAdaptive (name: 'fedadam' | 'fedyogi', config: AdaptiveConfig): Strategy {
  const { serverLr, beta1, beta2, tau } = config
  const yogi = name === 'fedyogi'

  const load = (state: JsonValue, n: number): { t: number, m: Float32Array, v: Float32Array } => {
    if (state === null) return { t: 0, m: new Float32Array(n), v: new Float32Array(n).fill(tau * tau) }
    const parsed = State.safeParse(state)
    if (!parsed.success) throw new StrategyConfigError(`${name} state is malformed: ${parsed.error.issues[0]?.message ?? 'invalid'}`)
    return { t: parsed.data.t, m: decodeVector(parsed.data.m, n, 'm'), v: decodeVector(parsed.data.v, n, 'v') }
  }

  return {
    name,
    aggregate: (updates, global, state) => {
      const sorted = checkUpdates(updates, global)
      const g = weightedMean(sorted)
      const { t, m, v } = load(state, global.length)
      const next = new Float32Array(global.length)
      for (let i = 0; i < global.length; i++) {
        const gi = g[i]!
        const g2 = gi * gi
        m[i] = beta1 * m[i]! + (1 - beta1) * gi
        const vi = v[i]!
        v[i] = yogi ? vi - (1 - beta2) * g2 * Math.sign(vi - g2) : beta2 * vi + (1 - beta2) * g2
        next[i] = global[i]! - serverLr * m[i]! / (Math.sqrt(v[i]!) + tau)
      }
      return { next, state: { t: t + 1, m: encodeVector(m), v: encodeVector(v) } }
    }
  }
}
