/**
 * Coordinate-wise median (Yin et al. 2018). Sample counts are ignored on
 * purpose: a robust rule must not let one site buy weight by claiming many
 * samples. An even count takes the mean of the two middle values.
 */
import { applyStep, checkUpdates } from './common.ts'
import type { Strategy } from './types.ts'

export interface MedianConfig {
  kind: 'median'
  serverLr: number
}

export function createMedian (config: MedianConfig): Strategy {
  return {
    name: 'median',
    aggregate: (updates, global) => {
      const sorted = checkUpdates(updates, global)
      const k = sorted.length
      const column = new Float64Array(k)
      const step = new Float64Array(global.length)
      for (let i = 0; i < global.length; i++) {
        for (let j = 0; j < k; j++) column[j] = sorted[j]!.delta[i]!
        column.sort()
        step[i] = k % 2 === 1 ? column[(k - 1) / 2]! : (column[k / 2 - 1]! + column[k / 2]!) / 2
      }
      return { next: applyStep(global, step, config.serverLr), state: null }
    }
  }
}
