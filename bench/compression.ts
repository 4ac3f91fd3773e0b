/**
 * Bytes per round per site for the shared parameters, uncompressed vs int8
 * blockwise vs top-k 1% + int8 (with error feedback at each site), and the
 * accuracy each reaches after the same number of FedAvg rounds on non-IID
 * MNIST (Dirichlet alpha 0.5 over 5 sites), so that the saving is not bought
 * with quality. The baseline (uncompressed) runs in the same process.
 *
 * The model is a plain-TypeScript 784-64-10 ReLU network: a trunk and a head
 * of the size of the MoE's shared part (trunk 784->64, router 64->5, head
 * 64->10 is 51,215 values; this is 50,890), trained here without tfjs so the
 * benchmark measures compression, not the backend.
 *
 *   npm run bench -- compression [rounds=150]
 */
import { createSeededRandom, type Random } from '../coordinator/components.ts'
import { createCompressor, decompress, type CompressionConfigInput } from '../coordinator/compression/combined.ts'
import { partitionDirichlet } from '../coordinator/partition.ts'
import { createStrategy } from '../coordinator/strategies/registry.ts'
import { loadMnist } from '../node/data/mnist.ts'
import type { LabeledData } from '../node/data/types.ts'
import type { BenchContext, Figures } from './run.ts'

const D = 784
const H = 64
const C = 10
const SITES = 5
const LOCAL = { steps: 10, batch: 32, lr: 0.1 }
const N_PARAMS = D * H + H + H * C + C
// Offsets of W1 (D x H), b1, W2 (H x C), b2 in the flat vector.
const W1 = 0
const B1 = D * H
const W2 = B1 + H
const B2 = W2 + H * C

function initParams (rng: Random): Float32Array {
  const p = new Float32Array(N_PARAMS)
  for (let i = 0; i < D * H; i++) p[W1 + i] = rng.normal() * Math.sqrt(2 / D)
  for (let i = 0; i < H * C; i++) p[W2 + i] = rng.normal() * Math.sqrt(2 / H)
  return p
}

/** Forward one example into z1 (pre-activation) and out (softmax probabilities). */
function forward (p: Float32Array | Float64Array, x: Float32Array, off: number, z1: Float64Array, out: Float64Array): void {
  for (let h = 0; h < H; h++) z1[h] = p[B1 + h]!
  for (let j = 0; j < D; j++) {
    const v = x[off + j]!
    if (v === 0) continue
    const row = W1 + j * H
    for (let h = 0; h < H; h++) z1[h]! += v * p[row + h]!
  }
  let max = -Infinity
  for (let c = 0; c < C; c++) {
    let s = p[B2 + c]!
    for (let h = 0; h < H; h++) if (z1[h]! > 0) s += z1[h]! * p[W2 + h * C + c]!
    out[c] = s
    if (s > max) max = s
  }
  let sum = 0
  for (let c = 0; c < C; c++) { out[c] = Math.exp(out[c]! - max); sum += out[c]! }
  for (let c = 0; c < C; c++) out[c]! /= sum
}

/** Local SGD on a site's rows; returns the pseudo-gradient start - local. */
function localDelta (global: Float32Array, data: LabeledData, rows: Int32Array, rng: Random): Float32Array {
  const p = Float64Array.from(global)
  const g = new Float64Array(N_PARAMS)
  const z1 = new Float64Array(H)
  const out = new Float64Array(C)
  const dz1 = new Float64Array(H)
  for (let s = 0; s < LOCAL.steps; s++) {
    g.fill(0)
    for (let b = 0; b < LOCAL.batch; b++) {
      const row = rows[rng.int(rows.length)]!
      const off = row * D
      forward(p, data.x, off, z1, out)
      out[data.y[row]!]! -= 1 // d loss / d logits
      dz1.fill(0)
      for (let h = 0; h < H; h++) {
        if (z1[h]! <= 0) continue
        let da = 0
        for (let c = 0; c < C; c++) {
          g[W2 + h * C + c]! += z1[h]! * out[c]!
          da += p[W2 + h * C + c]! * out[c]!
        }
        dz1[h] = da
      }
      for (let c = 0; c < C; c++) g[B2 + c]! += out[c]!
      for (let h = 0; h < H; h++) g[B1 + h]! += dz1[h]!
      for (let j = 0; j < D; j++) {
        const v = data.x[off + j]!
        if (v === 0) continue
        const row1 = W1 + j * H
        for (let h = 0; h < H; h++) g[row1 + h]! += v * dz1[h]!
      }
    }
    for (let i = 0; i < N_PARAMS; i++) p[i]! -= LOCAL.lr * g[i]! / LOCAL.batch
  }
  return Float32Array.from(global, (v, i) => v - p[i]!)
}

function accuracy (p: Float32Array, data: LabeledData): number {
  const z1 = new Float64Array(H)
  const out = new Float64Array(C)
  let right = 0
  for (let i = 0; i < data.n; i++) {
    forward(p, data.x, i * D, z1, out)
    let best = 0
    for (let c = 1; c < C; c++) if (out[c]! > out[best]!) best = c
    if (best === data.y[i]) right++
  }
  return right / data.n
}

interface Setting { name: string, config: CompressionConfigInput }

const SETTINGS: Setting[] = [
  { name: 'uncompressed', config: { kind: 'none' } },
  { name: 'int8', config: { kind: 'int8', blockSize: 256 } },
  { name: 'topk1%+int8', config: { kind: 'topk-int8', fraction: 0.01, blockSize: 256, errorFeedback: true } }
]

export default async function bench (ctx: BenchContext): Promise<Figures> {
  const rounds = Number(ctx.args[0] ?? 150)
  const train = await loadMnist({ split: 'train' })
  const test = await loadMnist({ split: 'test' })
  const { indices, summary } = partitionDirichlet(train.y, SITES, 0.5, createSeededRandom('compression-bench-split'))
  ctx.print(`non-IID MNIST, Dirichlet 0.5 over ${SITES} sites: ${summary.counts.join(', ')} examples; ${rounds} FedAvg rounds of ${LOCAL.steps} local steps`)
  ctx.print(`shared parameters: ${N_PARAMS} float32 values (${N_PARAMS * 4} bytes uncompressed)`)

  const results: Record<string, { bytesPerSitePerRound: number, ratio: number, accuracy: number }> = {}
  for (const setting of SETTINGS) {
    const t0 = process.hrtime.bigint()
    const strategy = createStrategy({ kind: 'fedavg' })
    let global = initParams(createSeededRandom('compression-bench-init'))
    const compressors = indices.map(() => createCompressor(setting.config, { length: N_PARAMS }))
    let raw = 0
    let wire = 0
    for (let r = 1; r <= rounds; r++) {
      const updates = indices.map((rows, s) => {
        const delta = localDelta(global, train, rows, createSeededRandom(`site-${s}/round-${r}`))
        const sent = compressors[s]!.compress(delta)
        raw += sent.rawBytes
        wire += sent.wireBytes
        // The coordinator only ever sees the bytes: decode them as a receiver would.
        return { site: `site-${s}`, delta: decompress(sent.bytes, N_PARAMS), samples: rows.length }
      })
      global = strategy.aggregate(updates, global, null).next
    }
    const acc = accuracy(global, test)
    const secs = Number(process.hrtime.bigint() - t0) / 1e9
    results[setting.name] = { bytesPerSitePerRound: wire / (rounds * SITES), ratio: raw / wire, accuracy: acc }
    ctx.print(`${setting.name.padEnd(13)} ${(wire / (rounds * SITES)).toFixed(0).padStart(8)} bytes/site/round  ratio ${(raw / wire).toFixed(2).padStart(7)}x  accuracy ${(acc * 100).toFixed(2)}%  (${secs.toFixed(1)} s)`)
  }
  const base = results.uncompressed!
  const int8 = results.int8!
  const topk = results['topk1%+int8']!
  return {
    rounds,
    shared_params: N_PARAMS,
    bytes_per_site_per_round: { uncompressed: base.bytesPerSitePerRound, int8: int8.bytesPerSitePerRound, topk_int8: topk.bytesPerSitePerRound },
    accuracy: { uncompressed: base.accuracy, int8: int8.accuracy, topk_int8: topk.accuracy },
    int8_accuracy_delta_points: round3((int8.accuracy - base.accuracy) * 100),
    int8_ratio: round3(int8.ratio),
    topk_int8_ratio: round3(topk.ratio),
    topk_int8_accuracy_delta_points: round3((topk.accuracy - base.accuracy) * 100)
  }
}

function round3 (x: number): number { return Math.round(x * 1000) / 1000 }
