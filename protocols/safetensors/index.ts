/**
 * safetensors: the weight format for expert artifacts and exports
 * (https://huggingface.co/docs/safetensors). A pure TensorMap <-> bytes codec.
 */
export { encodeSafetensors, decodeSafetensors, f32BitsToF16, f16ToF32Bits, f32BitsToBf16 } from './safetensors.ts'
export type { EncodeOptions, DecodeOptions, DecodedSafetensors } from './safetensors.ts'
export { DEFAULT_MAX_BYTES, DTYPE_BYTES, FLOAT_DTYPES, MAX_HEADER_BYTES, METADATA_KEY } from './constants.ts'
export type { Dtype, FloatDtype } from './constants.ts'
