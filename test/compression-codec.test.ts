import { describe, expect, it } from 'vitest'
import { createSeededRandom } from '../coordinator/components.ts'
import { summarizeRoundBytes } from '../coordinator/compression/accounting.ts'
import { createCompressor, decompress, type CompressionConfigInput } from '../coordinator/compression/combined.ts'
import { dequantizeInt8, quantizeInt8 } from '../coordinator/compression/int8.ts'
import { selectTopK, topkCount } from '../coordinator/compression/topk.ts'
import { decodePayload, encodePayload, HEADER_BYTES } from '../coordinator/compression/wire.ts'

function gaussian (seed: number, n: number, scale = 0.01): Float32Array {
  const rng = createSeededRandom(seed)
  return Float32Array.from({ length: n }, () => rng.normal() * scale)
}

describe('int8 blockwise (absmax per block)', () => {
  it('quantises a known block exactly', () => {
    const q = quantizeInt8(Float32Array.from([0.5, -1, 0.25, 0]), 4)
    expect([...q.scales]).toEqual([Math.fround(1 / 127)])
    expect([...q.values]).toEqual([64, -127, 32, 0])
    // Blocks are independent: a zero block has scale 0 and decodes to zeros.
    const z = quantizeInt8(Float32Array.from([0, 0, 3, -3]), 2)
    expect([...z.scales]).toEqual([0, Math.fround(3 / 127)])
    expect([...dequantizeInt8(z)].map(v => Math.round(v * 1e6) / 1e6)).toEqual([0, 0, 3, -3])
  })

  it('keeps every value within half a step of its block scale', () => {
    const x = gaussian(1, 10_000, 1)
    const q = quantizeInt8(x, 256)
    const y = dequantizeInt8(q)
    for (let i = 0; i < x.length; i++) expect(Math.abs(y[i]! - x[i]!)).toBeLessThanOrEqual(q.scales[Math.floor(i / 256)]! * 0.5 + 1e-7)
  })

  it('refuses non-finite input and bad block sizes with named errors', () => {
    expect(() => quantizeInt8(Float32Array.from([1, Number.NaN]))).toThrow(expect.objectContaining({ name: 'InvalidArgumentError', message: 'cannot quantise a non-finite value at index 1' }))
    expect(() => quantizeInt8(Float32Array.from([1]), 0)).toThrow(expect.objectContaining({ name: 'InvalidArgumentError' }))
  })
})

describe('top-k selection', () => {
  it('keeps the k largest magnitudes, indices ascending, ties to the lower index', () => {
    expect([...selectTopK(Float32Array.from([0.1, -5, 3, 0, 4, -3]), 3)]).toEqual([1, 2, 4])
    expect([...selectTopK(Float32Array.from([1, -1, 1, -1]), 2)]).toEqual([0, 1])
    expect([...selectTopK(Float32Array.from([2, 1]), 0)]).toEqual([])
    expect(topkCount(51_215, 0.01)).toBe(513)
    expect(topkCount(10, 0.01)).toBe(1)
  })

  it('matches a full sort on random data', () => {
    const x = gaussian(2, 5000)
    const k = 50
    const expected = [...x.keys()].sort((a, b) => Math.abs(x[b]!) - Math.abs(x[a]!) || a - b).slice(0, k).sort((a, b) => a - b)
    expect([...selectTopK(x, k)]).toEqual(expected)
  })
})

describe('wire layout', () => {
  it('round-trips every kind and has the documented size', () => {
    const x = gaussian(3, 1000)
    for (const kind of ['none', 'int8', 'topk', 'topk-int8'] as const) {
      const config: CompressionConfigInput = kind === 'none' ? { kind } : kind === 'int8' ? { kind } : { kind, fraction: 0.05, errorFeedback: false }
      const c = createCompressor(config, { length: 1000 })
      const out = c.compress(x)
      expect([...decompress(out.bytes, 1000)]).toEqual([...out.decoded])
      expect(out.rawBytes).toBe(4000)
    }
    expect(createCompressor({ kind: 'none' }, { length: 1000 }).compress(x).wireBytes).toBe(HEADER_BYTES + 4000)
    // 1000 values in blocks of 256: 4 scales.
    expect(createCompressor({ kind: 'int8' }, { length: 1000 }).compress(x).wireBytes).toBe(HEADER_BYTES + 16 + 1000)
  })

  it('encodes top-k indices as varint gaps: one byte for a gap under 128', () => {
    const payload = { kind: 'topk-f32' as const, n: 100_000, indices: Uint32Array.from([0, 1, 129, 99_999]), values: Float32Array.from([1, 2, 3, 4]) }
    const bytes = encodePayload(payload)
    // gaps 0, 0, 127, 99869: 1 + 1 + 1 + 3 bytes.
    expect(bytes.length).toBe(HEADER_BYTES + 16 + 6)
    expect(decodePayload(bytes, 100_000)).toEqual(payload)
  })

  it('rejects malformed payloads before allocating, naming what is wrong', () => {
    const good = createCompressor({ kind: 'topk-int8', fraction: 0.1 }, { length: 100 }).compress(gaussian(4, 100)).bytes
    const cases: Array<[Uint8Array, number, string]> = [
      [good.slice(0, 10), 100, 'payload of 10 bytes is shorter than its 16-byte header'],
      [Uint8Array.from([...Buffer.from('XXXX'), ...good.slice(4)]), 100, 'unknown payload tag "XXXX"'],
      [good, 99, 'payload is for a vector of 100 values, expected 99'],
      [good.slice(0, good.length - 1), 100, 'top-k payload has 39 bytes, its header implies 40..80'],
      [Uint8Array.from([...good.slice(0, -1), good[good.length - 1]! | 0x80]), 100, 'index 9 of 10 runs past the end of the payload'],
      [Uint8Array.from([...good, 0]), 100, 'top-k payload has 1 trailing bytes']
    ]
    for (const [bytes, n, message] of cases) expect(() => decodePayload(bytes, n)).toThrow(expect.objectContaining({ name: 'CompressionFormatError', message }))
    const huge = good.slice()
    new DataView(huge.buffer).setUint32(8, 0xffffffff, true)
    expect(() => decodePayload(huge, 100)).toThrow(expect.objectContaining({ name: 'CompressionFormatError', message: 'payload carries k=4294967295 values for a vector of 100' }))
    const outOfRange = encodePayload({ kind: 'topk-f32', n: 10, indices: Uint32Array.from([3, 12]), values: Float32Array.from([1, 1]) })
    expect(() => decodePayload(outOfRange, 10)).toThrow(expect.objectContaining({ name: 'CompressionFormatError', message: 'index 12 is out of range for a vector of 10' }))
  })
})

describe('error feedback', () => {
  it('keeps what the wire dropped at the site: sent + residual = delta + previous residual, exactly', () => {
    const n = 2000
    const c = createCompressor({ kind: 'topk-int8', fraction: 0.01 }, { length: n })
    let carried: Float32Array = new Float32Array(n)
    for (let r = 0; r < 5; r++) {
      const delta = gaussian(10 + r, n)
      const out = c.compress(delta)
      const residual = c.residual()
      for (let i = 0; i < n; i++) expect(out.decoded[i]! + residual[i]!).toBeCloseTo(delta[i]! + carried[i]!, 6)
      expect(out.decoded.filter(v => v !== 0).length).toBeLessThanOrEqual(20)
      carried = residual
    }
  })

  it('transmits the sum of many rounds of a constant delta almost entirely (nothing lost for good)', () => {
    const n = 1000
    const delta = gaussian(20, n)
    const ef = createCompressor({ kind: 'topk-int8', fraction: 0.01 }, { length: n })
    const noEf = createCompressor({ kind: 'topk-int8', fraction: 0.01, errorFeedback: false }, { length: n })
    const sumEf = new Float64Array(n)
    const sumNo = new Float64Array(n)
    const rounds = 400
    for (let r = 0; r < rounds; r++) {
      const a = ef.compress(delta).decoded
      const b = noEf.compress(delta).decoded
      for (let i = 0; i < n; i++) { sumEf[i]! += a[i]!; sumNo[i]! += b[i]! }
    }
    const relErr = (s: Float64Array): number => {
      let num = 0; let den = 0
      for (let i = 0; i < n; i++) { num += (s[i]! - rounds * delta[i]!) ** 2; den += (rounds * delta[i]!) ** 2 }
      return Math.sqrt(num / den)
    }
    // With feedback the residual stays bounded, so the relative error shrinks like 1/rounds.
    expect(relErr(sumEf)).toBeLessThan(0.15)
    expect(relErr(sumNo)).toBeGreaterThan(0.9)
  })

  it('restores a saved residual and refuses a residual of the wrong length', () => {
    const c = createCompressor({ kind: 'topk', fraction: 0.5 }, { length: 4 })
    c.setResidual(Float32Array.from([1, 0, 0, 0]))
    expect([...c.compress(Float32Array.from([0, 0.5, 0, 0])).decoded]).toEqual([1, 0.5, 0, 0])
    expect(() => c.setResidual(new Float32Array(3))).toThrow(expect.objectContaining({ name: 'InvalidArgumentError' }))
    expect(() => createCompressor({ kind: 'topk', fraction: 2 }, { length: 4 })).toThrow(expect.objectContaining({ name: 'StrategyConfigError', message: 'invalid compression config: fraction: expected a number ≤ 1, got 2' }))
  })
})

describe('byte accounting', () => {
  it('reports per-site and whole-round ratios, sites sorted', () => {
    const r = summarizeRoundBytes([{ site: 'b', rawBytes: 4000, wireBytes: 40 }, { site: 'a', rawBytes: 4000, wireBytes: 1000 }])
    expect(r).toEqual({
      perSite: [{ site: 'a', rawBytes: 4000, wireBytes: 1000, ratio: 4 }, { site: 'b', rawBytes: 4000, wireBytes: 40, ratio: 100 }],
      rawBytes: 8000,
      wireBytes: 1040,
      ratio: 8000 / 1040
    })
  })

  it('meets the size targets on a vector the size of the MoE shared part (51,215 values)', () => {
    const n = 51_215
    const x = gaussian(5, n)
    const int8 = createCompressor({ kind: 'int8' }, { length: n }).compress(x)
    const topk = createCompressor({ kind: 'topk-int8', fraction: 0.01 }, { length: n }).compress(x)
    expect(int8.rawBytes / int8.wireBytes).toBeGreaterThanOrEqual(3.9)
    expect(topk.rawBytes / topk.wireBytes).toBeGreaterThanOrEqual(100)
  })
})
