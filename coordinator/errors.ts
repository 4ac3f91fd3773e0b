import { ForgemeshError } from '../protocols/errors.ts'

/** Named errors of the pure coordination layer. */

export class InvalidArgumentError extends ForgemeshError {
  override name = 'InvalidArgumentError'
  override readonly code = 'ERR_INVALID_ARGUMENT'
}
