/**
 * Coordinate-wise trimmed mean (Yin et al. 2018): per coordinate, drop the
 * floor(beta * n) largest and smallest values and average the rest. Like the
 * median it ignores sample counts. beta < 0.5 leaves at least one value.
 */
import { applyStep, checkUpdates } from './common.ts'
import type { Strategy } from './types.ts'

export interface TrimmedMeanConfig {
  kind: 'trimmed-mean'
  beta: number
  serverLr: number
}

export function createTrimmedMean (config: TrimmedMeanConfig): Strategy {
  return {
    name: 'trimmed-mean',
    aggregate: (updates, global) => {
      const sorted = checkUpdates(updates, global)
      const k = sorted.length
      const cut = Math.floor(config.beta * k)
      const kept = k - 2 * cut
      const column = new Float64Array(k)
      const step = new Float64Array(global.length)
      for (let i = 0; i < global.length; i++) {
        for (let j = 0; j < k; j++) column[j] = sorted[j]!.delta[i]!
        column.sort()
        let s = 0
        for (let j = cut; j < k - cut; j++) s += column[j]!
        step[i] = s / kept
      }
      return { next: applyStep(global, step, config.serverLr), state: null }
    }
  }
}
