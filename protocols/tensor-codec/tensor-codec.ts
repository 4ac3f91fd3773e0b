/**
 * Many named tensors in one body, with a sha256 of the body inside (layout in
 * constants.ts). f32 is exact; f16 rounds to nearest even; int8 is blockwise
 * absmax (each block of `blockSize` values shares one float32 scale,
 * absmax/127). All decode to float32.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { z } from 'zod'
import { TensorChecksumError, TensorCodecError, TensorEncodeError } from '../errors.ts'
import { elementCount, type TensorMap } from '../tensors.ts'
import {
  CODEC_VERSION, DEFAULT_INT8_BLOCK, DEFAULT_MAX_BODY_BYTES, DTYPES, HASH_BYTES, HASH_OFFSET, MAGIC,
  MANIFEST_LENGTH_OFFSET, MANIFEST_OFFSET, MAX_INT8_BLOCK, MAX_MANIFEST_BYTES, MAX_NAME_LENGTH, MAX_RANK,
  MAX_TENSORS, MIN_INT8_BLOCK, type TensorDtype
} from './constants.ts'
import { decodeHalf, encodeHalf } from './half.ts'

export interface EncodeOptions {
  dtype: TensorDtype
  /** int8 only: values per scale. Default 256. */
  blockSize?: number
}

export interface DecodeOptions {
  /** Refuse bodies larger than this before looking inside. Default 1 GiB. */
  maxBytes?: number
  /**
   * false: f32 tensors may be views into `bytes` (when aligned) instead of
   * copies. Only for callers that own `bytes` and never change it. Default true.
   */
  copy?: boolean
  /**
   * sha256 of `bytes` from BODY_HASH_FROM on, computed by the caller itself
   * while the bytes arrived (FrameParser's bodyDigest). The carried hash is
   * checked against it instead of hashing the body a second time.
   */
  digest?: Uint8Array
}

/** A body as parts to send in order: f32 data stays in the caller's arrays. */
export interface EncodedTensorParts {
  parts: Uint8Array[]
  byteLength: number
  /** sha256 (hex) the body carries: what tensorBodyHash would return. */
  hash: string
}

const ManifestEntry = z.object({
  name: z.string().min(1).max(MAX_NAME_LENGTH),
  dtype: z.enum(DTYPES),
  shape: z.array(z.number().int().min(0).max(2 ** 31 - 1)).max(MAX_RANK),
  blockSize: z.number().int().min(MIN_INT8_BLOCK).max(MAX_INT8_BLOCK).optional()
}).strict()
const Manifest = z.object({ v: z.literal(CODEC_VERSION), tensors: z.array(ManifestEntry).max(MAX_TENSORS) }).strict()
type ManifestEntry = z.infer<typeof ManifestEntry>

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error('forgemesh tensor codec needs a little-endian host')

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })
const pad4 = (n: number): number => (n + 3) & ~3
const pad8 = (n: number): number => (n + 7) & ~7

/** Bytes one tensor takes in the data section (padded to 4). */
function dataBytes (n: number, dtype: TensorDtype, blockSize: number): number {
  switch (dtype) {
    case 'f32': return n * 4
    case 'f16': return pad4(n * 2)
    case 'int8': return Math.ceil(n / blockSize) * 4 + pad4(n)
    default: return unreachable(dtype)
  }
}

interface Plan {
  dtype: TensorDtype
  blockSize: number
  entries: ManifestEntry[]
  /** Preamble + manifest + padding, hash field still zero. */
  head: Uint8Array
  dataTotal: number
}

function plan (map: TensorMap, options: EncodeOptions): Plan {
  const { dtype } = options
  if (!(DTYPES as readonly string[]).includes(dtype)) throw new TensorEncodeError(`unknown dtype '${String(dtype)}'; expected one of ${DTYPES.join(', ')}`)
  const blockSize = options.blockSize ?? DEFAULT_INT8_BLOCK
  if (!Number.isInteger(blockSize) || blockSize < MIN_INT8_BLOCK || blockSize > MAX_INT8_BLOCK) {
    throw new TensorEncodeError(`int8 blockSize must be an integer in ${MIN_INT8_BLOCK}..${MAX_INT8_BLOCK}, got ${blockSize}`)
  }
  if (map.size > MAX_TENSORS) throw new TensorEncodeError(`${map.size} tensors exceed the limit of ${MAX_TENSORS}`)
  const entries: ManifestEntry[] = []
  let dataTotal = 0
  for (const [name, t] of map) {
    if (name.length === 0 || name.length > MAX_NAME_LENGTH) throw new TensorEncodeError(`tensor name must be 1..${MAX_NAME_LENGTH} characters, got ${name.length}`)
    if (t.shape.length > MAX_RANK) throw new TensorEncodeError(`tensor '${name}' has rank ${t.shape.length}, above ${MAX_RANK}`)
    if (!t.shape.every(d => Number.isInteger(d) && d >= 0)) throw new TensorEncodeError(`tensor '${name}' has an invalid shape [${t.shape.join(', ')}]`)
    const n = elementCount(t.shape)
    if (n !== t.data.length) throw new TensorEncodeError(`tensor '${name}' has shape [${t.shape.join(', ')}] (${n} values) but ${t.data.length} values`)
    entries.push(dtype === 'int8' ? { name, dtype, shape: [...t.shape], blockSize } : { name, dtype, shape: [...t.shape] })
    dataTotal += dataBytes(n, dtype, blockSize)
  }
  const manifest = encoder.encode(JSON.stringify({ v: CODEC_VERSION, tensors: entries }))
  if (manifest.byteLength > MAX_MANIFEST_BYTES) throw new TensorEncodeError(`manifest of ${manifest.byteLength} bytes exceeds ${MAX_MANIFEST_BYTES}`)
  const head = new Uint8Array(pad8(MANIFEST_OFFSET + manifest.byteLength))
  head.set(MAGIC, 0)
  new DataView(head.buffer).setUint32(MANIFEST_LENGTH_OFFSET, manifest.byteLength)
  head.set(manifest, MANIFEST_OFFSET)
  return { dtype, blockSize, entries, head, dataTotal }
}

export function encodeTensors (map: TensorMap, options: EncodeOptions): Uint8Array {
  const out = encodeBody(map, options)
  out.set(createHash('sha256').update(out.subarray(MANIFEST_LENGTH_OFFSET)).digest(), HASH_OFFSET)
  return out
}

/** The body with its hash field still zero. */
function encodeBody (map: TensorMap, options: EncodeOptions): Uint8Array {
  const { dtype, blockSize, entries, head, dataTotal } = plan(map, options)
  const out = new Uint8Array(head.byteLength + dataTotal)
  out.set(head, 0)
  let off = head.byteLength
  for (const entry of entries) {
    const data = map.get(entry.name)!.data
    off += writeTensor(out, off, entry.name, data, dtype, blockSize)
  }
  return out
}

/**
 * The same body as encodeTensors, as parts: for f32 the data parts are views
 * of the caller's arrays (no copy; they must not change until the parts are
 * sent), hashed straight from there. Other dtypes convert, so they copy.
 */
export function encodeTensorParts (map: TensorMap, options: EncodeOptions): EncodedTensorParts {
  const { parts, byteLength } = encodeTensorPartsUnhashed(map, options)
  const hasher = createHash('sha256').update(parts[0]!.subarray(MANIFEST_LENGTH_OFFSET))
  for (let i = 1; i < parts.length; i++) hasher.update(parts[i]!)
  const digest = hasher.digest()
  parts[0]!.set(digest, HASH_OFFSET)
  return { parts, byteLength, hash: digest.toString('hex') }
}

/**
 * encodeTensorParts without the hash: the body's hash field stays zero and
 * nothing is hashed here. For a protocol that sends the sha256 after the
 * body, so the sender hashes each part while it writes it (the digest is
 * what the hash field would hold: sha256 from BODY_HASH_FROM to the end).
 * The first part always holds the preamble.
 */
export function encodeTensorPartsUnhashed (map: TensorMap, options: EncodeOptions): { parts: [Uint8Array, ...Uint8Array[]], byteLength: number } {
  if (options.dtype !== 'f32') {
    const body = encodeBody(map, options)
    return { parts: [body], byteLength: body.byteLength }
  }
  const { entries, head, dataTotal } = plan(map, options)
  const parts: [Uint8Array, ...Uint8Array[]] = [head]
  for (const entry of entries) {
    const data = map.get(entry.name)!.data
    if (data.length > 0) parts.push(new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
  }
  return { parts, byteLength: head.byteLength + dataTotal }
}

/** Writes one tensor at `off` (4-aligned within `out`); returns the bytes used. */
function writeTensor (out: Uint8Array, off: number, name: string, data: Float32Array, dtype: TensorDtype, blockSize: number): number {
  const n = data.length
  switch (dtype) {
    case 'f32':
      out.set(new Uint8Array(data.buffer, data.byteOffset, n * 4), off)
      return n * 4
    case 'f16':
      encodeHalf(data, new Uint16Array(out.buffer, off, n))
      return pad4(n * 2)
    case 'int8': {
      const blocks = Math.ceil(n / blockSize)
      const scales = new Float32Array(out.buffer, off, blocks)
      const q = new Int8Array(out.buffer, off + blocks * 4, n)
      for (let b = 0; b < blocks; b++) {
        const start = b * blockSize
        const end = Math.min(start + blockSize, n)
        let absmax = 0
        for (let i = start; i < end; i++) {
          const a = Math.abs(data[i]!)
          if (a > absmax) absmax = a
        }
        if (!Number.isFinite(absmax)) {
          throw new TensorEncodeError(`tensor '${name}' holds a non-finite value in block ${b}; int8 cannot encode it`)
        }
        scales[b] = absmax / 127
        if (absmax === 0) continue
        const inv = 127 / absmax
        for (let i = start; i < end; i++) {
          const v = Math.round(data[i]! * inv)
          q[i] = v > 127 ? 127 : v < -127 ? -127 : v
        }
      }
      return blocks * 4 + pad4(n)
    }
    default: return unreachable(dtype)
  }
}

/** The sha256 (hex) a body carries for itself. */
export function tensorBodyHash (bytes: Uint8Array): string {
  if (bytes.byteLength < MANIFEST_OFFSET) throw new TensorCodecError(`tensor body of ${bytes.byteLength} bytes is shorter than its ${MANIFEST_OFFSET}-byte preamble`)
  return Buffer.from(bytes.buffer, bytes.byteOffset + HASH_OFFSET, HASH_BYTES).toString('hex')
}

export function decodeTensors (bytes: Uint8Array, options: DecodeOptions = {}): TensorMap {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BODY_BYTES
  if (bytes.byteLength > maxBytes) throw new TensorCodecError(`tensor body of ${bytes.byteLength} bytes exceeds the limit of ${maxBytes}`)
  if (bytes.byteLength < MANIFEST_OFFSET) throw new TensorCodecError(`tensor body of ${bytes.byteLength} bytes is shorter than its ${MANIFEST_OFFSET}-byte preamble`)
  for (let i = 0; i < MAGIC.length; i++) {
    if (bytes[i] !== MAGIC[i]) throw new TensorCodecError('tensor body does not start with the FMT1 magic')
  }
  const expected = bytes.subarray(HASH_OFFSET, HASH_OFFSET + HASH_BYTES)
  if (options.digest !== undefined && options.digest.byteLength !== HASH_BYTES) throw new TensorCodecError(`a body digest is ${HASH_BYTES} bytes, got ${options.digest.byteLength}`)
  const actual = Buffer.from(options.digest ?? createHash('sha256').update(bytes.subarray(MANIFEST_LENGTH_OFFSET)).digest())
  if (!timingSafeEqual(expected, actual)) {
    throw new TensorChecksumError(`tensor body fails its checksum: it carries sha256 ${Buffer.from(expected).toString('hex')} but hashes to ${actual.toString('hex')}`)
  }

  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const manifestBytes = view.getUint32(MANIFEST_LENGTH_OFFSET)
  if (manifestBytes > MAX_MANIFEST_BYTES || MANIFEST_OFFSET + manifestBytes > bytes.byteLength) {
    throw new TensorCodecError(`manifest length ${manifestBytes} runs past the body (${bytes.byteLength} bytes)`)
  }
  let raw: unknown
  try {
    raw = JSON.parse(decoder.decode(bytes.subarray(MANIFEST_OFFSET, MANIFEST_OFFSET + manifestBytes)))
  } catch (err) {
    throw new TensorCodecError('tensor manifest is not valid UTF-8 JSON', { cause: err })
  }
  const parsed = Manifest.safeParse(raw)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new TensorCodecError(`tensor manifest rejected: ${issue === undefined ? 'invalid' : `${issue.path.join('.') || '(root)'}: ${issue.message}`}`)
  }

  // Check the whole layout before allocating a single output array.
  const dataStart = pad8(MANIFEST_OFFSET + manifestBytes)
  const names = new Set<string>()
  const counts: number[] = []
  let total = dataStart
  for (const t of parsed.data.tensors) {
    if (names.has(t.name)) throw new TensorCodecError(`tensor '${t.name}' appears twice in the manifest`)
    names.add(t.name)
    if ((t.dtype === 'int8') !== (t.blockSize !== undefined)) throw new TensorCodecError(`tensor '${t.name}': blockSize is required for int8 and only for int8`)
    const n = elementCount(t.shape)
    if (n > bytes.byteLength) throw new TensorCodecError(`tensor '${t.name}' claims ${n} values, more than the body could hold`)
    counts.push(n)
    total += dataBytes(n, t.dtype, t.blockSize ?? DEFAULT_INT8_BLOCK)
  }
  if (total !== bytes.byteLength) throw new TensorCodecError(`tensor manifest accounts for ${total} bytes but the body has ${bytes.byteLength}`)

  const out: TensorMap = new Map()
  let off = dataStart
  parsed.data.tensors.forEach((t, i) => {
    const n = counts[i]!
    const data = readTensor(bytes, off, n, t, options.copy ?? true)
    off += dataBytes(n, t.dtype, t.blockSize ?? DEFAULT_INT8_BLOCK)
    out.set(t.name, { shape: t.shape, data })
  })
  return out
}

/** Bytes of `src` at `off` as an ArrayBuffer whose start is 4-aligned (copies only when it must). */
function alignedView (src: Uint8Array, off: number, length: number): { buffer: ArrayBufferLike, offset: number } {
  const abs = src.byteOffset + off
  if (abs % 4 === 0) return { buffer: src.buffer, offset: abs }
  return { buffer: src.slice(off, off + length).buffer, offset: 0 }
}

function readTensor (bytes: Uint8Array, off: number, n: number, t: ManifestEntry, copy: boolean): Float32Array {
  switch (t.dtype) {
    case 'f32':
      if (!copy && (bytes.byteOffset + off) % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset + off, n)
      return new Float32Array(bytes.slice(off, off + n * 4).buffer)
    case 'f16': {
      const { buffer, offset } = alignedView(bytes, off, n * 2)
      const out = new Float32Array(n)
      decodeHalf(new Uint16Array(buffer, offset, n), out)
      return out
    }
    case 'int8': {
      const blockSize = t.blockSize!
      const blocks = Math.ceil(n / blockSize)
      const { buffer, offset } = alignedView(bytes, off, blocks * 4 + n)
      const scales = new Float32Array(buffer, offset, blocks)
      const q = new Int8Array(buffer, offset + blocks * 4, n)
      const out = new Float32Array(n)
      for (let b = 0; b < blocks; b++) {
        const s = scales[b]!
        if (!Number.isFinite(s) || s < 0) throw new TensorCodecError(`tensor '${t.name}' has an invalid int8 scale ${s} in block ${b}`)
        const end = Math.min((b + 1) * blockSize, n)
        for (let i = b * blockSize; i < end; i++) out[i] = q[i]! * s
      }
      return out
    }
    default: return unreachable(t.dtype)
  }
}

function unreachable (x: never): never {
  throw new TensorCodecError(`unknown dtype '${String(x)}'`)
}
