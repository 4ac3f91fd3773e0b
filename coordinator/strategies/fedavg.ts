/**
 * FedAvg (McMahan et al. 2017): the sample-weighted mean of the sites'
 * pseudo-gradients, applied with a server learning rate (1 = plain averaging
 * of the local models). Stateless.
 */
import { applyStep, checkUpdates, weightedMean } from './common.ts'
import type { Strategy } from './types.ts'

export interface FedAvgConfig {
  kind: 'fedavg'
  serverLr: number
}

export function createFedAvg (config: FedAvgConfig): Strategy {
  return {
    name: 'fedavg',
    aggregate: (updates, global) => {
      const sorted = checkUpdates(updates, global)
      return { next: applyStep(global, weightedMean(sorted), config.serverLr), state: null }
    }
  }
}
