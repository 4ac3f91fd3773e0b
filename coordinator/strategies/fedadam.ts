/** FedAdam: Adam as the server optimizer over the averaged pseudo-gradient (Reddi et al. 2021). */
import { createAdaptive } from './adaptive.ts'
import type { Strategy } from './types.ts'

export interface FedAdamConfig {
  kind: 'fedadam'
  serverLr: number
  beta1: number
  beta2: number
  tau: number
}

export function createFedAdam (config: FedAdamConfig): Strategy {
  return createAdaptive('fedadam', config)
}
