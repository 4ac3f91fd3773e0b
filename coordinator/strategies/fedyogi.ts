/**
 * FedYogi: Yogi as the server optimizer (Reddi et al. 2021). Yogi's additive
 * second-moment update grows v more slowly than Adam's when gradients are
 * sparse or noisy, which the paper found steadier across heterogeneous sites.
 */
import { createAdaptive } from './adaptive.ts'
import type { Strategy } from './types.ts'

export interface FedYogiConfig {
  kind: 'fedyogi'
  serverLr: number
  beta1: number
  beta2: number
  tau: number
}

export function createFedYogi (config: FedYogiConfig): Strategy {
  return createAdaptive('fedyogi', config)
}
