/**
 * The site-side compressor for pseudo-gradients: none, int8 blockwise, top-k,
 * or top-k with int8 values, with error feedback (Seide et al. 2014; Stich
 * et al. 2018): what the wire dropped this round (the residual, kept at the
 * site) is added to the next round's delta, so nothing is lost for good,
 * only delayed. The residual is the exact difference between what the site
 * meant to send and what the receiver will decode.
 */
import { z } from 'zod'
import { describeIssues } from '../../protocols/validation.ts'
import { InvalidArgumentError, StrategyConfigError } from '../errors.ts'
import { DEFAULT_BLOCK_SIZE, dequantizeInt8, quantizeInt8 } from './int8.ts'
import { selectTopK, topkCount } from './topk.ts'
import { decodePayload, encodePayload, type Payload } from './wire.ts'

const blockSize = z.number().int().min(1).max(65536).default(DEFAULT_BLOCK_SIZE)
// 1% is the issue's target density; error feedback makes it converge.
const fraction = z.number().gt(0).max(1).default(0.01)

export const CompressionConfigSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('none') }).strict(),
  z.object({ kind: z.literal('int8'), blockSize, errorFeedback: z.boolean().default(false) }).strict(),
  z.object({ kind: z.literal('topk'), fraction, errorFeedback: z.boolean().default(true) }).strict(),
  z.object({ kind: z.literal('topk-int8'), fraction, blockSize, errorFeedback: z.boolean().default(true) }).strict()
])
export type CompressionConfig = z.infer<typeof CompressionConfigSchema>
export type CompressionConfigInput = z.input<typeof CompressionConfigSchema>

export function parseCompressionConfig (input: unknown): CompressionConfig {
  const result = CompressionConfigSchema.safeParse(input)
  if (!result.success) throw new StrategyConfigError(`invalid compression config: ${describeIssues(result.error.issues, input).join('; ')}`)
  return result.data
}

export interface Compressed {
  /** The wire payload (wire.ts layout). */
  bytes: Uint8Array
  /** Exactly what the receiver will decode from `bytes`. */
  decoded: Float32Array
  /** Bytes the same delta takes as plain float32. */
  rawBytes: number
  wireBytes: number
}

export interface Compressor {
  readonly config: CompressionConfig
  compress: (delta: Float32Array) => Compressed
  /** A copy of the residual carried into the next round (zeros without error feedback). */
  residual: () => Float32Array
  /** Restores a residual saved by the site (e.g. after a restart). */
  setResidual: (r: Float32Array) => void
}

export function createCompressor (input: CompressionConfigInput | CompressionConfig, options: { length: number }): Compressor {
  const config = parseCompressionConfig(input)
  const n = options.length
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`compressor needs a positive vector length, got ${n}`)
  const residual = new Float32Array(n)
  const feedback = config.kind !== 'none' && config.errorFeedback

  const toPayload = (x: Float32Array): Payload => {
    switch (config.kind) {
      case 'none': return { kind: 'f32', n, values: x }
      case 'int8': return { kind: 'int8', n, q: quantizeInt8(x, config.blockSize) }
      case 'topk': {
        const indices = selectTopK(x, topkCount(n, config.fraction))
        return { kind: 'topk-f32', n, indices, values: Float32Array.from(indices, i => x[i]!) }
      }
      case 'topk-int8': {
        const indices = selectTopK(x, topkCount(n, config.fraction))
        return { kind: 'topk-int8', n, indices, q: quantizeInt8(Float32Array.from(indices, i => x[i]!), config.blockSize) }
      }
      default: return unknownKind(config)
    }
  }

  return {
    config,
    compress: (delta) => {
      if (delta.length !== n) throw new InvalidArgumentError(`compressor is for vectors of ${n} values, got ${delta.length}`)
      const target = new Float32Array(n)
      for (let i = 0; i < n; i++) target[i] = delta[i]! + (feedback ? residual[i]! : 0)
      const payload = toPayload(target)
      const decoded = payloadToDense(payload)
      if (feedback) for (let i = 0; i < n; i++) residual[i] = target[i]! - decoded[i]!
      const bytes = encodePayload(payload)
      return { bytes, decoded, rawBytes: 4 * n, wireBytes: bytes.length }
    },
    residual: () => residual.slice(),
    setResidual: (r) => {
      if (r.length !== n) throw new InvalidArgumentError(`residual of ${r.length} values for a compressor of ${n}`)
      residual.set(r)
    }
  }
}

/** The dense vector a payload stands for. */
export function payloadToDense (p: Payload): Float32Array {
  switch (p.kind) {
    case 'f32': return p.values.slice()
    case 'int8': return dequantizeInt8(p.q)
    case 'topk-f32': {
      const out = new Float32Array(p.n)
      p.indices.forEach((idx, j) => { out[idx] = p.values[j]! })
      return out
    }
    case 'topk-int8': {
      const out = new Float32Array(p.n)
      const values = dequantizeInt8(p.q)
      p.indices.forEach((idx, j) => { out[idx] = values[j]! })
      return out
    }
    default: return unknownKind(p)
  }
}

/** Receiver side: wire bytes -> dense pseudo-gradient, validated. */
export function decompress (bytes: Uint8Array, expectedLength: number): Float32Array {
  return payloadToDense(decodePayload(bytes, expectedLength))
}

function unknownKind (x: never): never {
  throw new StrategyConfigError(`unknown compression kind '${(x as { kind: string }).kind}'`)
}
