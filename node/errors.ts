import { ForgemeshError } from '../protocols/errors.ts'

/** Named errors of a site: config, store, data, training, mesh effects. */

export class ConfigError extends ForgemeshError {
  override name = 'ConfigError'
  override readonly code = 'ERR_CONFIG'
}
