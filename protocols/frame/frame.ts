/**
 * Length-prefixed frames: a zod-validated JSON header plus an optional binary
 * body (layout in constants.ts). `FrameParser` (parser.ts) cuts frames out of
 * a byte stream incrementally and refuses an oversized frame from its length
 * field, before buffering it.
 */
import { z } from 'zod'
import { FrameDecodeError, FrameHeaderError, FrameTooLargeError } from '../errors.ts'
import { HEADER_LENGTH_BYTES, LENGTH_BYTES, MAX_FRAME_LIMIT, MAX_HEADER_BYTES, MIN_FRAME_BYTES } from './constants.ts'

export interface Frame<H = unknown> {
  header: H
  body?: Uint8Array
  /** Instead of `body`, from a reader that asked for it: the body as it arrived, in order, never joined. */
  bodyParts?: Uint8Array[]
  /**
   * Set by a receiver that asked for it (`bodyDigestFrom`): sha256 of the
   * body from that offset on, computed while the bytes arrived (a promise
   * when the receiver's hasher works on another thread).
   */
  bodyDigest?: Uint8Array | Promise<Uint8Array>
}

/** A frame to send: the body may be several parts, sent in order without being joined. */
export interface OutgoingFrame<H = unknown> {
  header: H
  body?: Uint8Array | readonly Uint8Array[]
}

export interface FrameLimits {
  /** Largest whole frame accepted, length prefix included. */
  maxFrameBytes: number
}

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

/**
 * The frame as parts: prefix+header, then the body untouched (one part, or
 * the caller's parts in order), so a large body goes to the stream without
 * being copied.
 */
export function encodeFrameParts (header: unknown, body?: Uint8Array | readonly Uint8Array[]): [Uint8Array, ...Uint8Array[]] {
  const parts = body === undefined ? [] : body instanceof Uint8Array ? [body] : body
  const text = JSON.stringify(header)
  // Pad with JSON whitespace so the body starts 8-aligned in the frame: a
  // receiver can then view float data in place instead of copying it.
  const raw = encoder.encode(text)
  const pad = (8 - ((MIN_FRAME_BYTES + raw.byteLength) % 8)) % 8
  const json = pad === 0 ? raw : encoder.encode(text + ' '.repeat(pad))
  if (json.byteLength > MAX_HEADER_BYTES) throw new FrameTooLargeError(`frame header of ${json.byteLength} bytes exceeds ${MAX_HEADER_BYTES}`)
  let bodyBytes = 0
  for (const p of parts) bodyBytes += p.byteLength
  const after = HEADER_LENGTH_BYTES + json.byteLength + bodyBytes
  if (after + LENGTH_BYTES > MAX_FRAME_LIMIT) throw new FrameTooLargeError(`frame of ${after + LENGTH_BYTES} bytes exceeds the u32 length field`)
  const head = new Uint8Array(MIN_FRAME_BYTES + json.byteLength)
  const view = new DataView(head.buffer)
  view.setUint32(0, after)
  view.setUint32(LENGTH_BYTES, json.byteLength)
  head.set(json, MIN_FRAME_BYTES)
  return [head, ...parts.filter(p => p.byteLength > 0)]
}

/** One contiguous frame (copies the body; use encodeFrameParts for bulk). */
export function encodeFrame (header: unknown, body?: Uint8Array | readonly Uint8Array[]): Uint8Array {
  const parts = encodeFrameParts(header, body)
  if (parts.length === 1) return parts[0]
  let total = 0
  for (const p of parts) total += p.byteLength
  const out = new Uint8Array(total)
  let off = 0
  for (const p of parts) { out.set(p, off); off += p.byteLength }
  return out
}

/** Total size a frame claims, read from its first 4 bytes; checked against the limit. */
export function claimedFrameBytes (prefix: Uint8Array, limits: FrameLimits): number {
  if (prefix.byteLength < LENGTH_BYTES) throw new FrameDecodeError(`frame of ${prefix.byteLength} bytes is shorter than its ${LENGTH_BYTES}-byte length field`)
  const after = new DataView(prefix.buffer, prefix.byteOffset, LENGTH_BYTES).getUint32(0)
  const total = after + LENGTH_BYTES
  if (total > limits.maxFrameBytes) throw new FrameTooLargeError(`frame of ${total} bytes exceeds this protocol's limit of ${limits.maxFrameBytes}`)
  if (total < MIN_FRAME_BYTES) throw new FrameDecodeError(`frame claims ${total} bytes, less than the minimum ${MIN_FRAME_BYTES}`)
  return total
}

/**
 * Decodes one complete frame (length prefix included) without judging the
 * header beyond "valid JSON". The body is a view into `bytes`, not a copy.
 */
export function decodeFrameRaw (bytes: Uint8Array, limits: FrameLimits): Frame<unknown> {
  const total = claimedFrameBytes(bytes, limits)
  if (total !== bytes.byteLength) throw new FrameDecodeError(`frame claims ${total} bytes but ${bytes.byteLength} were given`)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const headerBytes = view.getUint32(LENGTH_BYTES)
  if (headerBytes > MAX_HEADER_BYTES) throw new FrameTooLargeError(`frame header of ${headerBytes} bytes exceeds ${MAX_HEADER_BYTES}`)
  if (MIN_FRAME_BYTES + headerBytes > total) throw new FrameDecodeError(`frame header of ${headerBytes} bytes runs past the frame end (${total} bytes)`)
  let header: unknown
  try {
    header = JSON.parse(decoder.decode(bytes.subarray(MIN_FRAME_BYTES, MIN_FRAME_BYTES + headerBytes)))
  } catch (err) {
    throw new FrameHeaderError('frame header is not valid UTF-8 JSON', { cause: err })
  }
  const bodyStart = MIN_FRAME_BYTES + headerBytes
  return bodyStart < total ? { header, body: bytes.subarray(bodyStart, total) } : { header }
}

/**
 * Decodes the head of a frame whose body was kept apart (FrameParser's
 * bodyParts mode): `head` is the length prefix and header, `bodyBytes` the
 * body's length. Returns the header, not yet judged beyond "valid JSON".
 */
export function decodeFrameHead (head: Uint8Array, bodyBytes: number, limits: FrameLimits): unknown {
  const total = claimedFrameBytes(head, limits)
  if (total !== head.byteLength + bodyBytes) throw new FrameDecodeError(`frame claims ${total} bytes but ${head.byteLength + bodyBytes} were given`)
  if (head.byteLength < MIN_FRAME_BYTES) throw new FrameDecodeError(`frame head of ${head.byteLength} bytes is shorter than its two length fields`)
  const headerBytes = new DataView(head.buffer, head.byteOffset, head.byteLength).getUint32(LENGTH_BYTES)
  if (headerBytes > MAX_HEADER_BYTES) throw new FrameTooLargeError(`frame header of ${headerBytes} bytes exceeds ${MAX_HEADER_BYTES}`)
  if (MIN_FRAME_BYTES + headerBytes !== head.byteLength) throw new FrameDecodeError(`frame header of ${headerBytes} bytes does not fill a head of ${head.byteLength} bytes`)
  try {
    return JSON.parse(decoder.decode(head.subarray(MIN_FRAME_BYTES)))
  } catch (err) {
    throw new FrameHeaderError('frame header is not valid UTF-8 JSON', { cause: err })
  }
}

/** Validates a decoded header against a protocol's schema. */
export function parseHeader<S extends z.ZodType> (header: unknown, schema: S): z.infer<S> {
  const parsed = schema.safeParse(header)
  if (parsed.success) return parsed.data
  const issue = parsed.error.issues[0]
  throw new FrameHeaderError(`frame header rejected: ${issue === undefined ? 'invalid' : `${issue.path.join('.') || '(root)'}: ${issue.message}`}`)
}

/** Decodes one complete frame and validates its header. */
export function decodeFrame<S extends z.ZodType> (bytes: Uint8Array, headerSchema: S, limits: FrameLimits): Frame<z.infer<S>> {
  const raw = decodeFrameRaw(bytes, limits)
  const frame: Frame<z.infer<S>> = { header: parseHeader(raw.header, headerSchema) }
  if (raw.body !== undefined) frame.body = raw.body
  return frame
}

export { FrameParser, type BodyHasher, type BodyHasherFactory, type FrameBuffers, type FrameParserOptions, type ParsedFrame } from './parser.ts'

/** Header every protocol may answer with instead of its own response. */
export const ErrorHeader = z.object({
  kind: z.literal('error'),
  code: z.string().max(64),
  message: z.string().max(1024)
})
export type ErrorHeader = z.infer<typeof ErrorHeader>

/** A header whose first check is only "an object with a string kind". */
export const AnyHeader = z.looseObject({ kind: z.string().max(64) })
export type AnyHeader = z.infer<typeof AnyHeader>
