export { encodeFrame, encodeFrameParts, decodeFrame, decodeFrameRaw, decodeFrameHead, parseHeader, claimedFrameBytes, FrameParser, ErrorHeader, AnyHeader } from './frame.ts'
export type { BodyHasher, BodyHasherFactory, Frame, FrameLimits, OutgoingFrame, FrameBuffers, FrameParserOptions, ParsedFrame } from './frame.ts'
export { LENGTH_BYTES, HEADER_LENGTH_BYTES, MIN_FRAME_BYTES, MAX_HEADER_BYTES, MAX_FRAME_LIMIT } from './constants.ts'
