/**
 * Artifact: content-addressed blobs (expert artifacts, whole models) fetched
 * by sha256 in chunks. The client asks for a hash from an offset; the server
 * streams chunk frames to the end, then an end frame. A cut stream is resumed
 * by asking again from the offset reached.
 */
import { z } from 'zod'
import { MAX_BLOB_BYTES, MAX_CHUNK_BYTES } from './constants.ts'

export const Hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'a lowercase hex sha256')
const Offset = z.number().int().min(0).max(MAX_BLOB_BYTES)

export const FetchRequest = z.object({
  kind: z.literal('fetch'),
  hash: Hex64,
  offset: Offset,
  chunkBytes: z.number().int().min(1).max(MAX_CHUNK_BYTES)
}).strict()
export const StatRequest = z.object({ kind: z.literal('stat'), hash: Hex64 }).strict()
export const ArtifactRequest = z.discriminatedUnion('kind', [FetchRequest, StatRequest])
export type ArtifactRequest = z.infer<typeof ArtifactRequest>

export const Stat = z.object({ kind: z.literal('stat'), hash: Hex64, size: Offset }).strict()
/** One chunk; the body holds bytes [offset, offset + body length). */
export const Chunk = z.object({ kind: z.literal('chunk'), offset: Offset, size: Offset }).strict()
export const End = z.object({ kind: z.literal('end'), size: Offset }).strict()
export const NotFound = z.object({ kind: z.literal('not-found'), hash: Hex64 }).strict()
export const ArtifactResponse = z.discriminatedUnion('kind', [Stat, Chunk, End, NotFound])
export type ArtifactResponse = z.infer<typeof ArtifactResponse>
