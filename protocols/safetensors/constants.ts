/**
 * Limits and dtypes of the safetensors format
 * (https://huggingface.co/docs/safetensors: an 8-byte little-endian header
 * length N, N bytes of JSON, then the raw little-endian tensor bytes).
 */

/** The reference implementation refuses headers above 100 MB; so do we. */
export const MAX_HEADER_BYTES = 100_000_000

/** Default bound on the whole file handed to the decoder. */
export const DEFAULT_MAX_BYTES = 1024 * 1024 * 1024

/** Far above any tensor we build; bounds work done per header entry. */
export const MAX_RANK = 16

/** Reserved header key for free-form string metadata. */
export const METADATA_KEY = '__metadata__'

/** The header is padded with spaces so the data starts 8-byte aligned. */
export const HEADER_ALIGN = 8

/** Every dtype the format defines, with its width in bytes. */
export const DTYPE_BYTES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8
} as const

export type Dtype = keyof typeof DTYPE_BYTES

/** Dtypes whose values are all exactly representable as float32: decodable into a TensorMap. */
export const FLOAT_DTYPES = ['F32', 'F16', 'BF16'] as const
export type FloatDtype = typeof FLOAT_DTYPES[number]
