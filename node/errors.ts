import { ForgemeshError } from '../protocols/errors.ts'

/** Named errors of a site: config, store, data, training, mesh effects. */

export class ConfigError extends ForgemeshError {
  override name = 'ConfigError'
  override readonly code = 'ERR_CONFIG'
}

export class CorruptRecordError extends ForgemeshError {
  override name = 'CorruptRecordError'
  override readonly code = 'ERR_CORRUPT_RECORD'
}

export class StoreClosedError extends ForgemeshError {
  override name = 'StoreClosedError'
  override readonly code = 'ERR_STORE_CLOSED'
}
