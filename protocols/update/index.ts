export { UpdateRequest, UpdateFrame, UpdateDigest, UpdateAck, UpdateResponse } from './update.ts'
export { UPDATE_PROTOCOL, UPDATE_PROTOCOL_1_0, UPDATE_MAX_FRAME_BYTES, UPDATE_TIMEOUT_MS, UPDATE_SLICE_BYTES, UPDATE_SMALL_FRAME_BYTES } from './constants.ts'
