/**
 * A pure codec between a TensorMap and safetensors bytes, the weight format
 * PyTorch and Hugging Face read. Layout: u64 little-endian header length N,
 * N bytes of UTF-8 JSON ({name: {dtype, shape, data_offsets: [begin, end]}},
 * plus an optional "__metadata__" map of strings), padded with spaces to an
 * 8-byte boundary, then the tensors' little-endian bytes back to back.
 *
 * F32 round-trips bit for bit (bytes are copied, never read as numbers, so
 * even NaN payloads survive). F16 and BF16 decode exactly into float32; on
 * encode they round to nearest even.
 */
import { z } from 'zod'
import { SafetensorsDtypeError, SafetensorsFormatError, SafetensorsTooLargeError } from '../errors.ts'
import { elementCount, sortedTensorMap, type Tensor, type TensorMap } from '../tensors.ts'
import { DEFAULT_MAX_BYTES, DTYPE_BYTES, FLOAT_DTYPES, HEADER_ALIGN, MAX_HEADER_BYTES, MAX_RANK, METADATA_KEY, type Dtype, type FloatDtype } from './constants.ts'

export interface EncodeOptions {
  /** Stored dtype. Default F32 (exact). F16/BF16 halve the size and round. */
  dtype?: FloatDtype
}

export interface DecodeOptions {
  /** Refuse inputs larger than this many bytes. Default 1 GiB. */
  maxBytes?: number
}

export interface DecodedSafetensors {
  /** Float32 tensors, names in ascending order. */
  tensors: TensorMap
  metadata: Record<string, string>
  /** The dtype each tensor was stored as. */
  dtypes: Map<string, FloatDtype>
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1

const TensorEntry = z.object({
  dtype: z.enum(Object.keys(DTYPE_BYTES) as [Dtype, ...Dtype[]]),
  shape: z.array(z.number().int().nonnegative()).max(MAX_RANK),
  data_offsets: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()])
})
type TensorEntry = z.infer<typeof TensorEntry>
const Metadata = z.record(z.string(), z.string())
const Header = z.record(z.string().min(1), z.unknown())

export function encodeSafetensors (map: TensorMap, metadata?: Record<string, string>, options: EncodeOptions = {}): Uint8Array {
  const dtype = options.dtype ?? 'F32'
  if (!(FLOAT_DTYPES as readonly string[]).includes(dtype)) throw new SafetensorsDtypeError(`cannot encode dtype ${String(dtype)}; use one of ${FLOAT_DTYPES.join(', ')}`)
  const width = DTYPE_BYTES[dtype]
  const header: Record<string, unknown> = {}
  if (metadata !== undefined) {
    const parsed = Metadata.safeParse(metadata)
    if (!parsed.success) throw new SafetensorsFormatError('cannot encode: metadata must map strings to strings')
    header[METADATA_KEY] = parsed.data
  }
  let offset = 0
  for (const [name, t] of map) {
    checkEncodable(name, t)
    const end = offset + t.data.length * width
    header[name] = { dtype, shape: [...t.shape], data_offsets: [offset, end] }
    offset = end
  }
  const json = new TextEncoder().encode(JSON.stringify(header))
  const padded = Math.ceil(json.length / HEADER_ALIGN) * HEADER_ALIGN
  if (padded > MAX_HEADER_BYTES) throw new SafetensorsTooLargeError(`cannot encode: header of ${padded} bytes exceeds ${MAX_HEADER_BYTES}`)
  const out = new Uint8Array(8 + padded + offset)
  const view = new DataView(out.buffer)
  view.setUint32(0, padded, true)
  view.setUint32(4, 0, true)
  out.set(json, 8)
  out.fill(0x20, 8 + json.length, 8 + padded)
  let pos = 8 + padded
  for (const t of map.values()) {
    writeTensor(out, pos, t.data, dtype)
    pos += t.data.length * width
  }
  return out
}

export function decodeSafetensors (bytes: Uint8Array, options: DecodeOptions = {}): DecodedSafetensors {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES
  if (bytes.length > maxBytes) throw new SafetensorsTooLargeError(`safetensors input of ${bytes.length} bytes exceeds the limit of ${maxBytes}`)
  if (bytes.length < 8) throw new SafetensorsFormatError(`safetensors input of ${bytes.length} bytes is shorter than its 8-byte header length`)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const lo = view.getUint32(0, true)
  const hi = view.getUint32(4, true)
  if (hi !== 0 || lo > MAX_HEADER_BYTES) throw new SafetensorsFormatError(`header length ${hi * 2 ** 32 + lo} exceeds the limit of ${MAX_HEADER_BYTES} bytes`)
  if (8 + lo > bytes.length) throw new SafetensorsFormatError(`header length ${lo} runs past the end of the ${bytes.length}-byte input`)
  const dataStart = 8 + lo
  const dataLength = bytes.length - dataStart

  let raw: unknown
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, dataStart)))
  } catch (err) {
    throw new SafetensorsFormatError(`header is not valid UTF-8 JSON: ${(err as Error).message}`, { cause: err })
  }
  const header = Header.safeParse(raw)
  if (!header.success || Array.isArray(raw)) throw new SafetensorsFormatError('header must be a JSON object keyed by tensor name')

  let metadata: Record<string, string> = {}
  const entries: Array<[string, TensorEntry]> = []
  for (const [name, value] of Object.entries(header.data)) {
    if (name === METADATA_KEY) {
      const m = Metadata.safeParse(value)
      if (!m.success) throw new SafetensorsFormatError(`${METADATA_KEY} must map strings to strings`)
      metadata = m.data
      continue
    }
    const e = TensorEntry.safeParse(value)
    if (!e.success) throw new SafetensorsFormatError(`tensor '${name}': bad header entry: ${e.error.issues.map(i => `${i.path.join('.')} ${i.message}`).join('; ')}`)
    entries.push([name, e.data])
  }
  checkLayout(entries, dataLength)

  const tensors: Array<[string, Tensor]> = []
  const dtypes = new Map<string, FloatDtype>()
  for (const [name, e] of entries) {
    if (!(FLOAT_DTYPES as readonly string[]).includes(e.dtype)) throw new SafetensorsDtypeError(`tensor '${name}' has dtype ${e.dtype}; forgemesh tensors are float32 (accepted: ${FLOAT_DTYPES.join(', ')})`)
    const dtype = e.dtype as FloatDtype
    const src = bytes.subarray(dataStart + e.data_offsets[0], dataStart + e.data_offsets[1])
    tensors.push([name, { shape: [...e.shape], data: readTensor(src, dtype) }])
    dtypes.set(name, dtype)
  }
  return { tensors: sortedTensorMap(tensors), metadata, dtypes }
}

/** Sizes match shapes, and the tensors tile the data region with no gap or overlap. */
function checkLayout (entries: Array<[string, TensorEntry]>, dataLength: number): void {
  for (const [name, e] of entries) {
    const [begin, end] = e.data_offsets
    let n = 1
    for (const d of e.shape) {
      n *= d
      if (!Number.isSafeInteger(n)) throw new SafetensorsFormatError(`tensor '${name}': shape [${e.shape.join(', ')}] is too large`)
    }
    if (end < begin) throw new SafetensorsFormatError(`tensor '${name}': data_offsets [${begin}, ${end}] run backwards`)
    if (end > dataLength) throw new SafetensorsFormatError(`tensor '${name}': data_offsets [${begin}, ${end}] run past the ${dataLength}-byte data region`)
    const want = n * DTYPE_BYTES[e.dtype]
    if (end - begin !== want) throw new SafetensorsFormatError(`tensor '${name}': ${e.dtype} [${e.shape.join(', ')}] needs ${want} bytes, data_offsets span ${end - begin}`)
  }
  const sorted = [...entries].sort(([, a], [, b]) => a.data_offsets[0] - b.data_offsets[0] || a.data_offsets[1] - b.data_offsets[1])
  let expected = 0
  for (const [name, e] of sorted) {
    if (e.data_offsets[0] !== expected) throw new SafetensorsFormatError(`tensor '${name}' starts at ${e.data_offsets[0]}, expected ${expected}: tensors must tile the data region without gaps or overlap`)
    expected = e.data_offsets[1]
  }
  if (expected !== dataLength) throw new SafetensorsFormatError(`tensors cover ${expected} of the ${dataLength} data bytes`)
}

function checkEncodable (name: string, t: Tensor): void {
  if (name.length === 0 || name === METADATA_KEY) throw new SafetensorsFormatError(`cannot encode a tensor named '${name}'`)
  if (!(t.data instanceof Float32Array)) throw new SafetensorsFormatError(`cannot encode tensor '${name}': data is not a Float32Array`)
  if (t.shape.length > MAX_RANK || t.shape.some(d => !Number.isInteger(d) || d < 0)) throw new SafetensorsFormatError(`cannot encode tensor '${name}': bad shape [${t.shape.join(', ')}]`)
  if (elementCount(t.shape) !== t.data.length) throw new SafetensorsFormatError(`cannot encode tensor '${name}': shape [${t.shape.join(', ')}] holds ${elementCount(t.shape)} values, data has ${t.data.length}`)
}

function writeTensor (out: Uint8Array, pos: number, data: Float32Array, dtype: FloatDtype): void {
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length)
  if (dtype === 'F32') {
    if (LITTLE_ENDIAN) {
      out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), pos)
    } else {
      const v = new DataView(out.buffer, out.byteOffset)
      for (let i = 0; i < bits.length; i++) v.setUint32(pos + 4 * i, bits[i]!, true)
    }
    return
  }
  const v = new DataView(out.buffer, out.byteOffset)
  const convert = dtype === 'F16' ? f32BitsToF16 : f32BitsToBf16
  for (let i = 0; i < bits.length; i++) v.setUint16(pos + 2 * i, convert(bits[i]!), true)
}

function readTensor (src: Uint8Array, dtype: FloatDtype): Float32Array {
  const width = DTYPE_BYTES[dtype]
  const n = src.length / width
  const out = new Float32Array(n)
  const bits = new Uint32Array(out.buffer)
  const v = new DataView(src.buffer, src.byteOffset, src.byteLength)
  if (dtype === 'F32') {
    if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(src)
    else for (let i = 0; i < n; i++) bits[i] = v.getUint32(4 * i, true)
  } else if (dtype === 'BF16') {
    for (let i = 0; i < n; i++) bits[i] = v.getUint16(2 * i, true) << 16 >>> 0
  } else {
    for (let i = 0; i < n; i++) bits[i] = f16ToF32Bits(v.getUint16(2 * i, true))
  }
  return out
}

/** float32 bits -> IEEE half bits, round to nearest even; NaN stays NaN. */
export function f32BitsToF16 (x: number): number {
  const sign = (x >>> 16) & 0x8000
  const exp = (x >>> 23) & 0xff
  let mant = x & 0x7fffff
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0)
  const e = exp - 127 + 15
  if (e >= 0x1f) return sign | 0x7c00
  if (e <= 0) {
    // Subnormal half (or zero): value = m * 2^-24.
    if (e < -10) return sign
    mant |= 0x800000
    const shift = 14 - e
    let half = mant >>> shift
    const rem = mant & ((1 << shift) - 1)
    const halfway = 1 << (shift - 1)
    if (rem > halfway || (rem === halfway && (half & 1) === 1)) half++
    return sign | half
  }
  let half = (e << 10) | (mant >>> 13)
  const rem = mant & 0x1fff
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1)) half++
  return sign | half
}

/** IEEE half bits -> float32 bits (exact). */
export function f16ToF32Bits (h: number): number {
  const sign = (h & 0x8000) << 16
  const exp = (h >>> 10) & 0x1f
  const mant = h & 0x3ff
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0
  if (exp !== 0) return (sign | ((exp - 15 + 127) << 23) | (mant << 13)) >>> 0
  if (mant === 0) return sign >>> 0
  // Subnormal: normalise the mantissa.
  let m = mant
  let e = -14
  while ((m & 0x400) === 0) { m <<= 1; e-- }
  return (sign | ((e + 127) << 23) | ((m & 0x3ff) << 13)) >>> 0
}

/** float32 bits -> bfloat16 bits, round to nearest even; NaN stays NaN. */
export function f32BitsToBf16 (x: number): number {
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return ((x >>> 16) | 0x40) & 0xffff
  const rounded = x + 0x7fff + ((x >>> 16) & 1)
  return (rounded >>> 16) & 0xffff
}
