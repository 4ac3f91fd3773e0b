/**
 * Secure aggregation at n = 10 members over an update of 10^6 values:
 * - the time one client takes to clip, quantise and mask its update
 *   (self mask + 9 pairwise masks, ChaCha20 keystreams);
 * - the bytes and the time of a whole in-process round (every message
 *   counted), against plain aggregation measured in the same run: each
 *   member sends its float32 update and the server sums them.
 * Also a round with 3 dropouts before masking (their masks recovered).
 * Targets (issue 8): mask <= 300 ms per client; bytes <= 1.5x plain.
 */
import { generateKeyPairSync, sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { createSeededRandom } from '../coordinator/components.ts'
import { runLocalSecAggRound, type LocalMember } from '../coordinator/secagg/local.ts'
import { largestScale } from '../coordinator/secagg/quantise.ts'
import type { BenchContext, Figures } from './run.ts'

const N = 10
const THRESHOLD = 7
const LENGTH = 1_000_000
const CLIP = 1
// The plain baseline's per-message framing, the same 16-byte header + ids the secagg count uses.
const HEADER_BYTES = 16 + 2 + 8 + 2 + 6

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

export default async function bench (ctx: BenchContext): Promise<Figures> {
  const keys = new Map<string, { priv: KeyObject, pub: KeyObject }>()
  const members: LocalMember[] = []
  const r = createSeededRandom(42)
  for (let i = 0; i < N; i++) {
    const siteId = `site-${i}`
    const { privateKey, publicKey } = generateKeyPairSync('ed25519')
    keys.set(siteId, { priv: privateKey, pub: publicKey })
    const update = new Float32Array(LENGTH)
    for (let k = 0; k < LENGTH; k++) update[k] = r.normal() * 1e-3
    members.push({ siteId, update, sign: (b) => new Uint8Array(edSign(null, b, privateKey)) })
  }
  const verify = (id: string, b: Uint8Array, sig: Uint8Array): boolean => edVerify(null, b, keys.get(id)!.pub, sig)
  const scale = Math.floor(largestScale(N, CLIP, 32))

  // Baseline: plain aggregation, float32 updates summed by the server.
  const plain = (): { ms: number, bytes: number } => {
    const t0 = performance.now()
    const sum = new Float32Array(LENGTH)
    for (const m of members) {
      const wire = new Uint8Array((m.update as Float32Array).buffer.slice(0)) // what would be sent
      const u = new Float32Array(wire.buffer)
      for (let k = 0; k < LENGTH; k++) sum[k]! += u[k]!
    }
    return { ms: performance.now() - t0, bytes: N * (HEADER_BYTES + 4 * LENGTH) }
  }
  plain() // warm
  const base = plain()

  const round = (roundId: string, dropBefore = {}) => {
    const t0 = performance.now()
    const rep = runLocalSecAggRound({ roundId, n: N, threshold: THRESHOLD, vectorLength: LENGTH, clipNorm: CLIP, scale, members, dropBefore }, { random: createSeededRandom(roundId), verify }, () => performance.now())
    const ms = performance.now() - t0
    const sum = (o: Record<string, number>): number => Object.values(o).reduce((a, b) => a + b, 0)
    return { ms, bytes: sum(rep.bytesUp) + sum(rep.bytesDown), up: sum(rep.bytesUp), maskMs: Object.values(rep.maskMs), contributors: rep.result.contributors.length }
  }
  round('warm-up')
  const full = round('bench/full')
  const dropped = round('bench/dropouts', { maskedInput: ['site-0', 'site-1', 'site-2'] })

  const maskMs = median(full.maskMs)
  const expansion = full.bytes / base.bytes
  ctx.print(`plain aggregation   ${base.ms.toFixed(1)} ms, ${(base.bytes / 1e6).toFixed(3)} MB (n = ${N}, ${LENGTH} float32 values each)`)
  ctx.print(`secure aggregation  ${full.ms.toFixed(1)} ms, ${(full.bytes / 1e6).toFixed(3)} MB up+down (uplink ${(full.up / 1e6).toFixed(3)} MB), t = ${THRESHOLD}`)
  ctx.print(`  mask per client   median ${maskMs.toFixed(1)} ms (min ${Math.min(...full.maskMs).toFixed(1)}, max ${Math.max(...full.maskMs).toFixed(1)})`)
  ctx.print(`  with 3 dropouts   ${dropped.ms.toFixed(1)} ms, ${dropped.contributors} contributors, 3 mask keys recovered`)
  ctx.print(`bytes expansion     ${expansion.toFixed(4)}x   (target <= 1.5x)`)
  ctx.print(`mask ms per client  ${maskMs.toFixed(1)} ms  (target <= 300 ms)`)
  return {
    n: N,
    threshold: THRESHOLD,
    vector_length: LENGTH,
    plain_round_ms: round3(base.ms),
    plain_round_bytes: base.bytes,
    secagg_round_ms: round3(full.ms),
    secagg_round_bytes: full.bytes,
    secagg_round_ms_3_dropouts: round3(dropped.ms),
    round_time_ratio: round3(full.ms / base.ms),
    mask_ms_per_client: round3(maskMs),
    bytes_expansion: Math.round(expansion * 1e5) / 1e5
  }
}

function round3 (x: number): number { return Math.round(x * 1000) / 1000 }
