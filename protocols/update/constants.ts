export const UPDATE_PROTOCOL = '/forgemesh/update/1.0.0'
/**
 * One shared-parameter update in one frame. 512 MiB covers a 128 M-parameter
 * trunk in f32; anything larger goes through chunked transfer.
 */
export const UPDATE_MAX_FRAME_BYTES = 512 * 1024 * 1024
export const UPDATE_TIMEOUT_MS = 120_000
