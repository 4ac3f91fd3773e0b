export { CommitInfo, Announce, GetRound, ModelRequest, Aggregate, Missing, Ack, ModelResponse } from './model.ts'
export type { CommitInfo as CommitInfoType } from './model.ts'
export { MODEL_PROTOCOL, MODEL_MAX_FRAME_BYTES, MODEL_TIMEOUT_MS } from './constants.ts'
