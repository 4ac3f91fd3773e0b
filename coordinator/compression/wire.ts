/**
 * The compact wire layout of a (compressed) pseudo-gradient. All numbers are
 * little-endian. A 16-byte header, then the body:
 *
 *   tag        4 ASCII bytes: 'F32D' dense float32, 'I8BD' dense int8 blocks,
 *              'TKF4' top-k float32 values, 'TKI8' top-k int8 blocks
 *   n          u32  length of the dense vector
 *   k          u32  number of values carried (n for dense)
 *   blockSize  u32  int8 block size (0 for float32 values)
 *   scales     f32 x ceil(k / blockSize)     (int8 kinds only)
 *   values     f32 x k  or  i8 x k
 *   indices    (top-k only) k ascending indices as LEB128 varints of the gap
 *              idx - prev - 1 (prev starts at -1): at 1% density most gaps
 *              fit in one or two bytes instead of four.
 *
 * The decoder checks every size against the payload's real length before
 * it allocates, and rejects anything that does not add up exactly.
 */
import { CompressionFormatError } from '../errors.ts'
import { blockCount, type Int8Blocks } from './int8.ts'

export type Payload =
  | { kind: 'f32', n: number, values: Float32Array }
  | { kind: 'int8', n: number, q: Int8Blocks }
  | { kind: 'topk-f32', n: number, indices: Uint32Array, values: Float32Array }
  | { kind: 'topk-int8', n: number, indices: Uint32Array, q: Int8Blocks }

export const HEADER_BYTES = 16
/** 2^28 values (1 GiB of float32) is far above any shared part we send in one update. */
export const MAX_VECTOR_LENGTH = 2 ** 28
const MAX_BLOCK = 65536

const TAGS = { f32: 'F32D', int8: 'I8BD', 'topk-f32': 'TKF4', 'topk-int8': 'TKI8' } as const
type Kind = keyof typeof TAGS
const KIND_OF_TAG = new Map<string, Kind>(Object.entries(TAGS).map(([k, t]) => [t, k as Kind]))

function varintLength (v: number): number {
  let len = 1
  while (v >= 0x80) { v = Math.floor(v / 128); len++ }
  return len
}

export function encodePayload (p: Payload): Uint8Array {
  const sparse = p.kind === 'topk-f32' || p.kind === 'topk-int8'
  const k = p.kind === 'f32' || p.kind === 'topk-f32' ? p.values.length : p.q.values.length
  const blockSize = p.kind === 'int8' || p.kind === 'topk-int8' ? p.q.blockSize : 0
  const scales = p.kind === 'int8' || p.kind === 'topk-int8' ? p.q.scales : undefined
  let indexBytes = 0
  if (sparse) {
    let prev = -1
    for (const idx of p.indices) { indexBytes += varintLength(idx - prev - 1); prev = idx }
  }
  const valueBytes = blockSize === 0 ? 4 * k : k
  const total = HEADER_BYTES + (scales?.length ?? 0) * 4 + valueBytes + indexBytes
  const out = new Uint8Array(total)
  const view = new DataView(out.buffer)
  for (let i = 0; i < 4; i++) out[i] = TAGS[p.kind].charCodeAt(i)
  view.setUint32(4, p.n, true)
  view.setUint32(8, k, true)
  view.setUint32(12, blockSize, true)
  let off = HEADER_BYTES
  if (scales !== undefined) for (const s of scales) { view.setFloat32(off, s, true); off += 4 }
  if (p.kind === 'f32' || p.kind === 'topk-f32') for (const v of p.values) { view.setFloat32(off, v, true); off += 4 }
  else { out.set(new Uint8Array(p.q.values.buffer, p.q.values.byteOffset, k), off); off += k }
  if (sparse) {
    let prev = -1
    for (const idx of p.indices) {
      let gap = idx - prev - 1
      prev = idx
      while (gap >= 0x80) { out[off++] = (gap & 0x7f) | 0x80; gap = Math.floor(gap / 128) }
      out[off++] = gap
    }
  }
  return out
}

function fail (msg: string): never {
  throw new CompressionFormatError(msg)
}

/** Decodes and validates a payload; `expectedLength` is the vector length the receiver expects. */
export function decodePayload (bytes: Uint8Array, expectedLength: number): Payload {
  if (bytes.length < HEADER_BYTES) fail(`payload of ${bytes.length} bytes is shorter than its ${HEADER_BYTES}-byte header`)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const tag = String.fromCharCode(bytes[0]!, bytes[1]!, bytes[2]!, bytes[3]!)
  const kind = KIND_OF_TAG.get(tag) ?? fail(`unknown payload tag ${JSON.stringify(tag)}`)
  const n = view.getUint32(4, true)
  const k = view.getUint32(8, true)
  const blockSize = view.getUint32(12, true)
  if (n !== expectedLength) fail(`payload is for a vector of ${n} values, expected ${expectedLength}`)
  if (n > MAX_VECTOR_LENGTH) fail(`payload vector length ${n} exceeds the limit ${MAX_VECTOR_LENGTH}`)
  if (k > n) fail(`payload carries k=${k} values for a vector of ${n}`)
  const sparse = kind === 'topk-f32' || kind === 'topk-int8'
  if (!sparse && k !== n) fail(`dense payload carries ${k} values for a vector of ${n}`)
  const int8 = kind === 'int8' || kind === 'topk-int8'
  if (int8 && (blockSize < 1 || blockSize > MAX_BLOCK)) fail(`int8 block size ${blockSize} is outside 1..${MAX_BLOCK}`)
  if (!int8 && blockSize !== 0) fail(`float32 payload declares block size ${blockSize}`)
  const blocks = int8 ? blockCount(k, blockSize) : 0
  const fixed = HEADER_BYTES + 4 * blocks + (int8 ? k : 4 * k)
  if (!sparse && bytes.length !== fixed) fail(`dense payload has ${bytes.length} bytes, its header implies ${fixed}`)
  if (sparse && (bytes.length < fixed + k || bytes.length > fixed + 5 * k)) fail(`top-k payload has ${bytes.length} bytes, its header implies ${fixed + k}..${fixed + 5 * k}`)

  let off = HEADER_BYTES
  const scales = new Float32Array(blocks)
  for (let b = 0; b < blocks; b++) {
    const s = view.getFloat32(off, true)
    if (!(s >= 0 && Number.isFinite(s))) fail(`int8 block ${b} has scale ${s}`)
    scales[b] = s
    off += 4
  }
  let values: Float32Array | undefined
  let q: Int8Blocks | undefined
  if (int8) {
    q = { blockSize, scales, values: new Int8Array(bytes.buffer.slice(bytes.byteOffset + off, bytes.byteOffset + off + k)) }
    off += k
  } else {
    values = new Float32Array(k)
    for (let i = 0; i < k; i++) {
      const v = view.getFloat32(off, true)
      if (!Number.isFinite(v)) fail(`value ${i} is not finite`)
      values[i] = v
      off += 4
    }
  }
  if (!sparse) return kind === 'f32' ? { kind: 'f32', n, values: values! } : { kind: 'int8', n, q: q! }

  const indices = new Uint32Array(k)
  let prev = -1
  for (let j = 0; j < k; j++) {
    let gap = 0
    let mul = 1
    for (let len = 0; ; len++) {
      if (off >= bytes.length) fail(`index ${j} of ${k} runs past the end of the payload`)
      if (len === 5) fail(`index ${j} is a varint longer than 5 bytes`)
      const byte = bytes[off++]!
      gap += (byte & 0x7f) * mul
      mul *= 128
      if (byte < 0x80) break
    }
    const idx = prev + 1 + gap
    if (idx >= n) fail(`index ${idx} is out of range for a vector of ${n}`)
    indices[j] = idx
    prev = idx
  }
  if (off !== bytes.length) fail(`top-k payload has ${bytes.length - off} trailing bytes`)
  return kind === 'topk-f32' ? { kind: 'topk-f32', n, indices, values: values! } : { kind: 'topk-int8', n, indices, q: q! }
}
