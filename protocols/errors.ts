/**
 * Named errors of the wire layer. Every error in forgemesh extends
 * ForgemeshError so callers can tell ours from a runtime failure, and each
 * carries a stable `code` that tests and the CLI's `--json` output use.
 */
export class ForgemeshError extends Error {
  override name = 'ForgemeshError'
  readonly code: string = 'ERR_FORGEMESH'
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options)
  }
}

/** Malformed safetensors bytes (header, offsets, sizes), or a TensorMap that cannot be encoded. */
export class SafetensorsFormatError extends ForgemeshError {
  override name = 'SafetensorsFormatError'
  override readonly code: string = 'ERR_SAFETENSORS_FORMAT'
}

export class SafetensorsTooLargeError extends ForgemeshError {
  override name = 'SafetensorsTooLargeError'
  override readonly code: string = 'ERR_SAFETENSORS_TOO_LARGE'
}

/** A well-formed safetensors dtype that forgemesh's float32 tensors cannot hold (I64, F64, ...). */
export class SafetensorsDtypeError extends ForgemeshError {
  override name = 'SafetensorsDtypeError'
  override readonly code: string = 'ERR_SAFETENSORS_DTYPE'
}
