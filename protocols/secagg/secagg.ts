/**
 * Secure aggregation over the mesh: the coordinator drives the five stages
 * of coordinator/secagg (Bonawitz et al. 2017) as one request per member per
 * stage, carrying the server's message for that stage; the member answers
 * with its own. The messages themselves are coordinator/secagg's, validated
 * there with zod; in a header their binary fields travel as { b64 } objects,
 * and a masked input's ring values travel as the frame body (little-endian
 * uint32), so the header stays small.
 *
 *   advertise      request: round parameters          reply: advertise (signed keys)
 *   share-keys     request: the roster                reply: share boxes
 *   masked-input   request: the boxes addressed to it reply: masked input (body) + sample count
 *   consistency    request: the survivor list         reply: signature over it
 *   unmask         request: survivors + signatures    reply: shares for unmasking
 */
import { z } from 'zod'
import { FrameHeaderError } from '../errors.ts'
import { MAX_BINARY_FIELD_BYTES } from './constants.ts'

export const SecAggStage = z.enum(['advertise', 'share-keys', 'masked-input', 'consistency', 'unmask'])
export type SecAggStage = z.infer<typeof SecAggStage>

const Hex64 = z.string().regex(/^[0-9a-f]{64}$/)

export const SecAggParamsHeader = z.object({
  n: z.number().int().min(2).max(1000),
  threshold: z.number().int().min(2).max(1000),
  vectorLength: z.number().int().positive(),
  ringBits: z.union([z.literal(16), z.literal(32)]),
  scale: z.number().positive().finite(),
  clipNorm: z.number().positive().finite(),
  /** The committed parameters every input must be computed from. */
  baseHash: Hex64
}).strict()
export type SecAggParamsHeader = z.infer<typeof SecAggParamsHeader>

export const SecAggRequest = z.object({
  kind: z.literal('secagg'),
  stage: SecAggStage,
  round: z.number().int().positive(),
  roundId: z.string().min(1).max(256),
  /** Only in the advertise request. */
  params: SecAggParamsHeader.optional(),
  /** The server's message for this stage (none for advertise). */
  message: z.unknown().optional()
}).strict()
export type SecAggRequest = z.infer<typeof SecAggRequest>

export const SecAggReply = z.object({
  kind: z.literal('secagg-reply'),
  stage: SecAggStage,
  message: z.unknown(),
  /** In the masked-input reply: examples behind the input (recorded, not used to weight: the sum hides who sent what). */
  samples: z.number().int().positive().optional()
}).strict()
export type SecAggReply = z.infer<typeof SecAggReply>

const MAX_DEPTH = 8

/** A message with its Uint8Array fields as { b64 } (JSON can carry it). */
export function toWire (value: unknown, depth = 0): unknown {
  if (depth > MAX_DEPTH) throw new FrameHeaderError('secagg message nests too deeply')
  if (value instanceof Uint8Array) return { b64: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') }
  if (Array.isArray(value)) return value.map(v => toWire(v, depth + 1))
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toWire(v, depth + 1)]))
  return value
}

/** Inverse of toWire, with a size check on every binary field before it is decoded. */
export function fromWire (value: unknown, depth = 0): unknown {
  if (depth > MAX_DEPTH) throw new FrameHeaderError('secagg message nests too deeply')
  if (Array.isArray(value)) return value.map(v => fromWire(v, depth + 1))
  if (value === null || typeof value !== 'object') return value
  const entries = Object.entries(value)
  if (entries.length === 1 && entries[0]![0] === 'b64') {
    const s = entries[0]![1]
    if (typeof s !== 'string' || s.length > Math.ceil(MAX_BINARY_FIELD_BYTES / 3) * 4 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) {
      throw new FrameHeaderError('secagg binary field is not base64 of at most 4096 bytes')
    }
    return new Uint8Array(Buffer.from(s, 'base64'))
  }
  return Object.fromEntries(entries.map(([k, v]) => [k, fromWire(v, depth + 1)]))
}
