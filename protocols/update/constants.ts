/**
 * 1.1.0: the body's sha256 may trail the body (a digest frame after it), so
 * a sender hashes while it writes instead of before its first byte. 1.0.0
 * (the hash only in the update header) is still served and still spoken to
 * a peer that lacks 1.1.0.
 */
export const UPDATE_PROTOCOL = '/forgemesh/update/1.1.0'
export const UPDATE_PROTOCOL_1_0 = '/forgemesh/update/1.0.0'
/**
 * One shared-parameter update in one frame. 512 MiB covers a 128 M-parameter
 * trunk in f32; anything larger goes through chunked transfer.
 */
export const UPDATE_MAX_FRAME_BYTES = 512 * 1024 * 1024
export const UPDATE_TIMEOUT_MS = 120_000
/**
 * A sender hashes and writes the body in slices of this size: small enough
 * that hashing one slice (~0.5 ms) never starves the stream, large enough
 * that the per-slice overhead is noise.
 */
export const UPDATE_SLICE_BYTES = 1024 * 1024
/** The ack and the digest frame are small headers. */
export const UPDATE_SMALL_FRAME_BYTES = 64 * 1024
