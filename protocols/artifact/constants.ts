export const ARTIFACT_PROTOCOL = '/forgemesh/artifact/1.0.0'
/**
 * 1 MiB chunks: large enough that a frame header is noise, small enough that
 * a cut connection loses little and neither side buffers much.
 */
export const DEFAULT_CHUNK_BYTES = 1024 * 1024
export const MAX_CHUNK_BYTES = 8 * 1024 * 1024
/** A chunk frame: the chunk plus its small header. */
export const ARTIFACT_MAX_FRAME_BYTES = MAX_CHUNK_BYTES + 64 * 1024
/** Deadline for the next chunk to arrive; a stalled stream is cut and resumed. */
export const ARTIFACT_CHUNK_TIMEOUT_MS = 30_000
/** 2^53 - 1: offsets stay exact in JSON numbers. */
export const MAX_BLOB_BYTES = Number.MAX_SAFE_INTEGER
