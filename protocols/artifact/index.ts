export { Hex64, FetchRequest, StatRequest, ArtifactRequest, Stat, Chunk, End, NotFound, ArtifactResponse } from './artifact.ts'
export { ARTIFACT_PROTOCOL, DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES, ARTIFACT_MAX_FRAME_BYTES, ARTIFACT_CHUNK_TIMEOUT_MS, MAX_BLOB_BYTES } from './constants.ts'
