export const PROTOCOL_NAME = 'secagg'
export const PROTOCOL_VERSION = '1.0.0'
export const SECAGG_PROTOCOL = `/forgemesh/${PROTOCOL_NAME}/${PROTOCOL_VERSION}`
/** A masked input is the update's length in 32-bit ring values; the rest are small headers. */
export const SECAGG_MAX_FRAME_BYTES = 512 * 1024 * 1024
export const SECAGG_TIMEOUT_MS = 60_000
/** Binary fields in a header (keys, signatures, share boxes) are small; a long one is not one of ours. */
export const MAX_BINARY_FIELD_BYTES = 4096
