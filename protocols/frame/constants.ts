/**
 * Layout of a forgemesh frame on a stream:
 *
 *   u32 BE  length of everything after this field (header-length field + header + body)
 *   u32 BE  header length
 *   header  UTF-8 JSON, validated with the protocol's zod schema
 *   body    optional raw bytes (absent when the length leaves none)
 *
 * Fixed 4-byte lengths (not varints) so a size check is one read and a
 * claimed length can be refused before a single byte is allocated for it.
 */
export const LENGTH_BYTES = 4
export const HEADER_LENGTH_BYTES = 4
/** Smallest possible frame on the wire: two lengths and an empty header. */
export const MIN_FRAME_BYTES = LENGTH_BYTES + HEADER_LENGTH_BYTES
/** Headers are small JSON objects; a large one is a bug or an attack. */
export const MAX_HEADER_BYTES = 64 * 1024
/** Upper bound any protocol may set (u32 length field). */
export const MAX_FRAME_LIMIT = 0xffff_ffff
