/**
 * What the site runtime needs from whatever it trains. The runtime (rounds
 * over the mesh, durability, privacy) is written once against this seam; a
 * linear-regression learner drives its exactness tests and the tfjs MoE
 * learner drives real federations.
 */
import type { TensorMap } from '../../protocols/tensors.ts'

export interface LocalTrainResult {
  /** Examples seen in these steps (FedAvg weights by the site's sample count, not this). */
  samples: number
  /** Mean training loss over the steps. */
  loss: number
}

export interface Learner {
  /** Examples the site holds; the weight of its updates under FedAvg. */
  readonly sampleCount: number
  /** The shared parameters (trunk, router, head), names sorted; copies, not views. */
  getShared: () => TensorMap
  /** Replaces the shared parameters with a committed aggregate. */
  setShared: (params: TensorMap) => void
  /** H local steps on the site's own data, from the current shared parameters. */
  trainLocal: (steps: number, options?: { signal?: AbortSignal }) => Promise<LocalTrainResult>
  /** Releases tensors, workers and files. */
  dispose?: () => Promise<void> | void
}
