export { UpdateRequest, UpdateAck, UpdateResponse } from './update.ts'
export { UPDATE_PROTOCOL, UPDATE_MAX_FRAME_BYTES, UPDATE_TIMEOUT_MS } from './constants.ts'
