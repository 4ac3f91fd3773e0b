export const PROTOCOL_NAME = 'membership'
export const PROTOCOL_VERSION = '1.0.0'
export const MEMBERSHIP_PROTOCOL = `/forgemesh/${PROTOCOL_NAME}/${PROTOCOL_VERSION}`
/** A hello is a few hundred bytes of JSON; nothing bigger is legitimate. */
export const MEMBERSHIP_MAX_FRAME_BYTES = 64 * 1024
export const MEMBERSHIP_TIMEOUT_MS = 10_000
