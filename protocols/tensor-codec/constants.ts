/**
 * Layout of a named-tensor body (all integers big-endian):
 *
 *   0   4   magic "FMT1"
 *   4  32   sha256 of every byte from offset 36 to the end
 *  36   4   manifest length m
 *  40   m   manifest: UTF-8 JSON { v: 1, tensors: [{ name, dtype, shape, blockSize? }] }
 *  ..       zero padding to a multiple of 8
 *  ..       data, tensor after tensor in manifest order, each padded to 4 bytes:
 *             f32   n x float32 LE
 *             f16   n x binary16 LE
 *             int8  ceil(n / blockSize) x float32 LE scales, then n x int8
 *
 * Offsets are not stored: they follow from shapes and dtypes, so the decoder
 * checks that they add up to the body's length before it allocates anything.
 */
export const MAGIC = new Uint8Array([0x46, 0x4d, 0x54, 0x31]) // "FMT1"
export const HASH_OFFSET = 4
export const HASH_BYTES = 32
export const MANIFEST_LENGTH_OFFSET = HASH_OFFSET + HASH_BYTES
export const MANIFEST_OFFSET = MANIFEST_LENGTH_OFFSET + 4
/** The carried sha256 covers every byte from here to the end of the body. */
export const BODY_HASH_FROM = MANIFEST_LENGTH_OFFSET
export const CODEC_VERSION = 1

export const DTYPES = ['f32', 'f16', 'int8'] as const
export type TensorDtype = typeof DTYPES[number]

/**
 * int8 block of 256 values: the per-block float32 scale costs 1.6 % of the
 * payload, and one outlier only coarsens its own 256 neighbours.
 */
export const DEFAULT_INT8_BLOCK = 256
export const MIN_INT8_BLOCK = 8
export const MAX_INT8_BLOCK = 65536

/** Default ceiling for decodeTensors: whole models go through chunked transfer instead. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024 * 1024
export const MAX_MANIFEST_BYTES = 16 * 1024 * 1024
export const MAX_TENSORS = 100_000
export const MAX_RANK = 8
export const MAX_NAME_LENGTH = 512
