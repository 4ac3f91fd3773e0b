/**
 * Update: a site's shared-parameter update for one round, sent to the round's
 * aggregator. The body is a named-tensor codec body; the header says which
 * round and base it belongs to. What the receiver does with it is up to the
 * rounds layer (a callback), not this protocol.
 *
 * 1.0.0: one frame, UpdateRequest (bodyHash required) + body; answer UpdateAck.
 * 1.1.0: UpdateFrame + body, and when the frame names no bodyHash, an
 * UpdateDigest frame right after it with the body's sha256 (the body's own
 * hash field is then zero); answer UpdateAck. The receiver checks the digest
 * against what it hashed on arrival before it decodes or uses anything.
 */
import { z } from 'zod'
import { DTYPES } from '../tensor-codec/constants.ts'

const Hex64 = z.string().regex(/^[0-9a-f]{64}$/)
const Label = z.string().min(1).max(64).regex(/^[A-Za-z0-9._:-]+$/)

const fields = {
  kind: z.literal('update'),
  round: z.number().int().min(0),
  site: Label,
  /** sha256 of the committed parameters this update was computed from. */
  baseHash: Hex64.optional(),
  dtype: z.enum(DTYPES),
  /** sha256 of the body, so the receiver can refuse a mismatch before decoding. */
  bodyHash: Hex64,
  numSamples: z.number().int().min(0).optional(),
  /** Small, flat, protocol-agnostic facts (loss, steps); the rounds layer validates its own keys. */
  meta: z.record(z.string().max(64), z.union([z.number(), z.string().max(256), z.boolean()])).optional()
}

/** 1.0.0's request, and the header a receiver hands on (bodyHash always known by then). */
export const UpdateRequest = z.object(fields).strict()
export type UpdateRequest = z.infer<typeof UpdateRequest>

/** 1.1.0's update frame: bodyHash absent means an UpdateDigest frame follows the body. */
export const UpdateFrame = z.object({ ...fields, bodyHash: Hex64.optional() }).strict()
export type UpdateFrame = z.infer<typeof UpdateFrame>

/** 1.1.0's trailer: sha256 of the body from BODY_HASH_FROM to its end. */
export const UpdateDigest = z.object({ kind: z.literal('digest'), bodyHash: Hex64 }).strict()
export type UpdateDigest = z.infer<typeof UpdateDigest>

export const UpdateAck = z.object({
  kind: z.literal('ack'),
  round: z.number().int().min(0),
  accepted: z.boolean(),
  reason: z.string().max(1024).optional()
}).strict()
export type UpdateAck = z.infer<typeof UpdateAck>

export const UpdateResponse = UpdateAck
