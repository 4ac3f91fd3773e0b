export { SecAggStage, SecAggRequest, SecAggReply, SecAggParamsHeader, toWire, fromWire } from './secagg.ts'
export { SECAGG_PROTOCOL, SECAGG_MAX_FRAME_BYTES, SECAGG_TIMEOUT_MS, MAX_BINARY_FIELD_BYTES } from './constants.ts'
