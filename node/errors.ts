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

/** Bad input in a site's data (area "data"); the message starts with `file:line:` where there is a line. */
export class DataInputError extends ForgemeshError {
  override name = 'DataInputError'
  override readonly code: string = 'ERR_DATA_INPUT'
  constructor (message: string, readonly file: string, readonly line?: number, options?: { cause?: unknown }) {
    super(line === undefined ? `${file}: ${message}` : `${file}:${line}: ${message}`, options)
  }
}

export class MnistFormatError extends DataInputError {
  override name = 'MnistFormatError'
  override readonly code = 'ERR_MNIST_FORMAT'
}

export class DataFileNotFoundError extends DataInputError {
  override name = 'DataFileNotFoundError'
  override readonly code = 'ERR_DATA_FILE_NOT_FOUND'
}

export class EmptyDataFileError extends DataInputError {
  override name = 'EmptyDataFileError'
  override readonly code = 'ERR_EMPTY_DATA_FILE'
}

export class CsvSyntaxError extends DataInputError {
  override name = 'CsvSyntaxError'
  override readonly code = 'ERR_CSV_SYNTAX'
}

export class ColumnCountError extends DataInputError {
  override name = 'ColumnCountError'
  override readonly code = 'ERR_COLUMN_COUNT'
}

export class BadValueError extends DataInputError {
  override name = 'BadValueError'
  override readonly code = 'ERR_BAD_VALUE'
}

export class UnknownLabelError extends DataInputError {
  override name = 'UnknownLabelError'
  override readonly code = 'ERR_UNKNOWN_LABEL'
}

export class DatasetSchemaError extends ForgemeshError {
  override name = 'DatasetSchemaError'
  override readonly code = 'ERR_DATASET_SCHEMA'
}

export class AuditChainBrokenError extends ForgemeshError {
  override name = 'AuditChainBrokenError'
  override readonly code = 'ERR_AUDIT_CHAIN'
  readonly seq: number
  readonly problem: 'malformed' | 'unreadable'
  constructor (message: string, detail: { seq: number, problem: 'malformed' | 'unreadable' }) {
    super(message)
    this.seq = detail.seq
    this.problem = detail.problem
  }
}

export class ApiConfigError extends ForgemeshError {
  override name = 'ApiConfigError'
  override readonly code = 'ERR_API_CONFIG'
}

export class HttpError extends ForgemeshError {
  override name = 'HttpError'
  override readonly code = 'ERR_HTTP'
  readonly status: number
  constructor (status: number, message: string) {
    super(message)
    this.status = status
  }
}
