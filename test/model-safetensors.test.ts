import { describe, expect, it } from 'vitest'
import { decodeSafetensors, encodeSafetensors, f16ToF32Bits, f32BitsToBf16, f32BitsToF16 } from '../protocols/safetensors/index.ts'
import { createSeededRandom } from '../coordinator/components.ts'
import { sortedTensorMap, type TensorMap } from '../protocols/tensors.ts'

const bitsOf = (a: Float32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length)

function fromBits (bits: number[]): Float32Array {
  return new Float32Array(new Uint32Array(bits).buffer)
}

function sample (): TensorMap {
  const r = createSeededRandom(5)
  const w = Float32Array.from({ length: 12 }, () => r.normal())
  // Edge values: -0, infinities, a subnormal, a NaN with a payload, the float32 extremes.
  const edge = fromBits([0x80000000, 0x7f800000, 0xff800000, 0x00000001, 0x7fc12345, 0x7f7fffff, 0x00800000])
  return sortedTensorMap([['w', { shape: [3, 4], data: w }], ['edge', { shape: [7], data: edge }], ['scalar', { shape: [], data: new Float32Array([3.5]) }], ['empty', { shape: [0, 5], data: new Float32Array(0) }]])
}

function handmade (header: unknown, data: Uint8Array, pad = true): Uint8Array {
  let json = JSON.stringify(header)
  if (pad) while (json.length % 8 !== 0) json += ' '
  const h = new TextEncoder().encode(json)
  const out = new Uint8Array(8 + h.length + data.length)
  new DataView(out.buffer).setUint32(0, h.length, true)
  out.set(h, 8)
  out.set(data, 8 + h.length)
  return out
}

function f32le (values: number[]): Uint8Array {
  const b = new Uint8Array(values.length * 4)
  const v = new DataView(b.buffer)
  values.forEach((x, i) => { v.setFloat32(4 * i, x, true) })
  return b
}

describe('safetensors codec', () => {
  it('round-trips float32 tensors bit for bit, NaN payloads and -0 included, both ways', () => {
    const map = sample()
    const bytes = encodeSafetensors(map, { spec: 'abc', format: 'pt' })
    const back = decodeSafetensors(bytes)
    expect([...back.tensors.keys()]).toEqual(['edge', 'empty', 'scalar', 'w'])
    for (const [name, t] of map) {
      expect(back.tensors.get(name)!.shape).toEqual(t.shape)
      expect([...bitsOf(back.tensors.get(name)!.data)]).toEqual([...bitsOf(t.data)])
    }
    expect(back.metadata).toEqual({ spec: 'abc', format: 'pt' })
    expect(back.dtypes.get('w')).toBe('F32')
    // bytes -> map -> bytes is the identity too.
    expect(encodeSafetensors(back.tensors, back.metadata)).toEqual(bytes)
  })

  it('writes the published layout: u64 LE header length, JSON with dtype/shape/data_offsets, padded, then LE data', () => {
    const map = sortedTensorMap([['a', { shape: [2], data: new Float32Array([1, -2]) }], ['b', { shape: [1, 1], data: new Float32Array([0.5]) }]])
    const bytes = encodeSafetensors(map, { k: 'v' })
    const view = new DataView(bytes.buffer)
    const n = view.getUint32(0, true)
    expect(view.getUint32(4, true)).toBe(0)
    expect(n % 8).toBe(0)
    const json = new TextDecoder().decode(bytes.subarray(8, 8 + n))
    expect(json.trimEnd()).toBe('{"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1,1],"data_offsets":[8,12]}}')
    expect(json.slice(json.trimEnd().length)).toMatch(/^ *$/)
    expect(bytes.length).toBe(8 + n + 12)
    expect([...bytes.subarray(8 + n)]).toEqual([...f32le([1, -2, 0.5])])
  })

  it('reads a file written by hand to the spec, unpadded header and keys in any order', () => {
    const data = new Uint8Array([...f32le([7]), ...f32le([1, 2, 3])])
    const file = handmade({ z: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, a: { shape: [3], data_offsets: [4, 16], dtype: 'F32' } }, data, false)
    const { tensors, metadata } = decodeSafetensors(file)
    expect(metadata).toEqual({})
    expect([...tensors.keys()]).toEqual(['a', 'z'])
    expect([...tensors.get('a')!.data]).toEqual([1, 2, 3])
    expect([...tensors.get('z')!.data]).toEqual([7])
  })

  it('converts half precision exactly: every non-NaN F16 value survives f16 -> f32 -> f16', () => {
    const wrong: number[] = []
    for (let h = 0; h < 0x10000; h++) {
      const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0
      if (!isNaN && f32BitsToF16(f16ToF32Bits(h)) !== h) wrong.push(h)
    }
    expect(wrong).toEqual([])
    expect(f16ToF32Bits(0x0001)).toBe(bitsOf(new Float32Array([2 ** -24]))[0])
    expect(f16ToF32Bits(0xfc00)).toBe(0xff800000)
    const b = (x: number): number => bitsOf(new Float32Array([x]))[0]!
    expect(f32BitsToF16(b(1))).toBe(0x3c00)
    expect(f32BitsToF16(b(65504))).toBe(0x7bff)
    expect(f32BitsToF16(b(65519))).toBe(0x7bff)
    expect(f32BitsToF16(b(65520))).toBe(0x7c00) // rounds up to infinity
    expect(f32BitsToF16(b(2 ** -24))).toBe(0x0001)
    expect(f32BitsToF16(b(2 ** -25))).toBe(0x0000) // tie to even
    expect(f32BitsToF16(b(1.5 * 2 ** -25))).toBe(0x0001)
    expect(f32BitsToF16(b(1 + 2 ** -11))).toBe(0x3c00) // tie to even
    expect(f32BitsToF16(b(1 + 3 * 2 ** -11))).toBe(0x3c02)
    expect(f32BitsToBf16(b(1 + 2 ** -8))).toBe(0x3f80)
    expect(f32BitsToBf16(b(1 + 3 * 2 ** -8))).toBe(0x3f82)
  })

  it('encodes F16 and BF16 on request and decodes them into float32', () => {
    const map = sortedTensorMap([['x', { shape: [4], data: new Float32Array([1, -0.5, 1 / 3, 70000]) }]])
    const f16 = decodeSafetensors(encodeSafetensors(map, undefined, { dtype: 'F16' }))
    expect(f16.dtypes.get('x')).toBe('F16')
    expect([...f16.tensors.get('x')!.data]).toEqual([1, -0.5, 0.333251953125, Infinity])
    const bf = decodeSafetensors(encodeSafetensors(map, undefined, { dtype: 'BF16' }))
    expect([...bf.tensors.get('x')!.data]).toEqual([1, -0.5, 0.333984375, 70144])
  })

  it('refuses malformed input with named errors before allocating', () => {
    const good = encodeSafetensors(sample())
    const cases: Array<[Uint8Array, string, RegExp]> = [
      [new Uint8Array(5), 'SafetensorsFormatError', /shorter than its 8-byte header length/],
      [(() => { const b = good.slice(); new DataView(b.buffer).setUint32(4, 1, true); return b })(), 'SafetensorsFormatError', /exceeds the limit/],
      [(() => { const b = good.slice(); new DataView(b.buffer).setUint32(0, good.length, true); return b })(), 'SafetensorsFormatError', /runs past the end/],
      [handmade([1, 2], new Uint8Array(0)), 'SafetensorsFormatError', /JSON object/],
      [(() => { const b = good.slice(); b[8] = 0x7b; b[9] = 0xff; return b })(), 'SafetensorsFormatError', /not valid UTF-8 JSON/],
      [handmade({ a: { dtype: 'F33', shape: [1], data_offsets: [0, 4] } }, f32le([1])), 'SafetensorsFormatError', /tensor 'a': bad header entry: dtype/],
      [handmade({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, f32le([1])), 'SafetensorsFormatError', /needs 8 bytes, data_offsets span 4/],
      [handmade({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, f32le([1, 2])), 'SafetensorsFormatError', /starts at 4, expected 0/],
      [handmade({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, f32le([1, 2])), 'SafetensorsFormatError', /cover 4 of the 8 data bytes/],
      [handmade({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, f32le([1, 2])), 'SafetensorsFormatError', /'b' starts at 4, expected 8/],
      [handmade({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 8] } }, f32le([1])), 'SafetensorsFormatError', /run past the 4-byte data region/],
      [handmade({ a: { dtype: 'F32', shape: [2 ** 40, 2 ** 20], data_offsets: [0, 4] } }, f32le([1])), 'SafetensorsFormatError', /too large/],
      [handmade({ __metadata__: { k: 1 } }, new Uint8Array(0)), 'SafetensorsFormatError', /__metadata__ must map strings to strings/],
      [handmade({ a: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8)), 'SafetensorsDtypeError', /'a' has dtype I64/]
    ]
    for (const [bytes, name, message] of cases) {
      let caught: unknown
      try { decodeSafetensors(bytes) } catch (err) { caught = err }
      expect(caught, String(message)).toMatchObject({ name, message: expect.stringMatching(message) })
    }
    expect(() => decodeSafetensors(good, { maxBytes: 100 })).toThrowError(expect.objectContaining({ name: 'SafetensorsTooLargeError', message: `safetensors input of ${good.length} bytes exceeds the limit of 100` }))
  })

  it('refuses to encode a tensor whose shape and data disagree', () => {
    const bad = new Map([['a', { shape: [2, 2], data: new Float32Array(3) }]])
    expect(() => encodeSafetensors(bad)).toThrowError(expect.objectContaining({ name: 'SafetensorsFormatError', message: "cannot encode tensor 'a': shape [2, 2] holds 4 values, data has 3" }))
    expect(() => encodeSafetensors(new Map([['__metadata__', { shape: [1], data: new Float32Array(1) }]]))).toThrow(/cannot encode a tensor named '__metadata__'/)
  })
})
