export { encodeTensors, encodeTensorParts, encodeTensorPartsUnhashed, decodeTensors, tensorBodyHash } from './tensor-codec.ts'
export type { EncodeOptions, DecodeOptions, EncodedTensorParts } from './tensor-codec.ts'
export { f32BitsToF16 } from './half.ts'
export { DTYPES, DEFAULT_INT8_BLOCK, DEFAULT_MAX_BODY_BYTES, BODY_HASH_FROM, type TensorDtype } from './constants.ts'
