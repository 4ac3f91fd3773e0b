import { ForgemeshError } from '../protocols/errors.ts'

/** Named errors of the simulator. */

export class TopologyError extends ForgemeshError {
  override name = 'TopologyError'
  override readonly code = 'ERR_TOPOLOGY'
}
