export const MODEL_PROTOCOL = '/forgemesh/model/1.0.0'
/** A committed aggregate inline up to this size; larger ones are fetched as blobs by hash. */
export const MODEL_MAX_FRAME_BYTES = 512 * 1024 * 1024
export const MODEL_TIMEOUT_MS = 120_000
