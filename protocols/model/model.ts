/**
 * Model: the round's coordinator announces a committed aggregate, and any
 * member can ask for a committed round it missed (or the latest). The
 * aggregate travels inline when it fits a frame; otherwise the answer names
 * its blob hash and the peer fetches it with chunked transfer.
 */
import { z } from 'zod'
import { DTYPES } from '../tensor-codec/constants.ts'

const Hex64 = z.string().regex(/^[0-9a-f]{64}$/)

/** What identifies a committed round, the same in announce and fetch answers. */
export const CommitInfo = z.object({
  round: z.number().int().min(0),
  /** sha256 of the codec body of the aggregate. */
  hash: Hex64,
  /** Hash of the previous commit: members can check they hold the same chain. */
  parentHash: Hex64.optional(),
  bytes: z.number().int().min(0),
  dtype: z.enum(DTYPES),
  meta: z.record(z.string().max(64), z.union([z.number(), z.string().max(256), z.boolean()])).optional()
}).strict()
export type CommitInfo = z.infer<typeof CommitInfo>

export const Announce = CommitInfo.extend({ kind: z.literal('announce'), inline: z.boolean() }).strict()
export const GetRound = z.object({ kind: z.literal('get'), round: z.union([z.number().int().min(0), z.literal('latest')]) }).strict()
export const ModelRequest = z.discriminatedUnion('kind', [Announce, GetRound])
export type ModelRequest = z.infer<typeof ModelRequest>

export const Aggregate = CommitInfo.extend({ kind: z.literal('aggregate'), inline: z.boolean() }).strict()
export const Missing = z.object({ kind: z.literal('missing'), round: z.union([z.number().int().min(0), z.literal('latest')]), latest: z.number().int().min(0).optional() }).strict()
export const Ack = z.object({ kind: z.literal('ack'), round: z.number().int().min(0), accepted: z.boolean(), reason: z.string().max(1024).optional() }).strict()
export const ModelResponse = z.discriminatedUnion('kind', [Aggregate, Missing, Ack])
export type ModelResponse = z.infer<typeof ModelResponse>
