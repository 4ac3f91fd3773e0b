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

// --- mesh wire format (area "mesh") ---

/** Base of every error that means "a peer sent bytes that break the wire format". */
export class WireFormatError extends ForgemeshError {
  override name = 'WireFormatError'
  override readonly code: string = 'ERR_WIRE_FORMAT'
}

export class FrameTooLargeError extends WireFormatError {
  override name = 'FrameTooLargeError'
  override readonly code: string = 'ERR_FRAME_TOO_LARGE'
}

export class FrameDecodeError extends WireFormatError {
  override name = 'FrameDecodeError'
  override readonly code: string = 'ERR_FRAME_DECODE'
}

export class FrameHeaderError extends WireFormatError {
  override name = 'FrameHeaderError'
  override readonly code: string = 'ERR_FRAME_HEADER'
}

export class TensorCodecError extends WireFormatError {
  override name = 'TensorCodecError'
  override readonly code: string = 'ERR_TENSOR_CODEC'
}

export class TensorChecksumError extends WireFormatError {
  override name = 'TensorChecksumError'
  override readonly code: string = 'ERR_TENSOR_CHECKSUM'
}

/** Bad input handed to an encoder by our own code (not a peer's fault). */
export class TensorEncodeError extends ForgemeshError {
  override name = 'TensorEncodeError'
  override readonly code: string = 'ERR_TENSOR_ENCODE'
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

// --- site runtime payloads (area "site runtime") ---

/** An update body that does not decode to the federation's shared parameters (names, shapes, compressed payload). */
export class UpdatePayloadError extends WireFormatError {
  override name = 'UpdatePayloadError'
  override readonly code: string = 'ERR_UPDATE_PAYLOAD'
}

/** An update holding NaN or Infinity: poison for every aggregate, so its sender is cut off. */
export class NonFiniteUpdateError extends WireFormatError {
  override name = 'NonFiniteUpdateError'
  override readonly code: string = 'ERR_NON_FINITE_UPDATE'
}

/** A frame that claims to come from another site than the peer's hello said. */
export class SiteImpersonationError extends WireFormatError {
  override name = 'SiteImpersonationError'
  override readonly code: string = 'ERR_SITE_IMPERSONATION'
}

/** A committed-round bundle (aggregate, record, strategy state) whose parts are missing or malformed. */
export class CommitBundleError extends WireFormatError {
  override name = 'CommitBundleError'
  override readonly code: string = 'ERR_COMMIT_BUNDLE'
}
