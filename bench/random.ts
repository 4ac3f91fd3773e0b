/**
 * The seeded random source feeds partitioners, DP noise and the simulator's
 * link models; it must never be the slow part. Baseline: Math.random in the
 * same run.
 */
import { createSeededRandom } from '../coordinator/components.ts'
import type { BenchContext, Figures } from './run.ts'

function timeIt (n: number, fn: () => number): { msPerMillion: number, sink: number } {
  let sink = 0
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < n; i++) sink += fn()
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  return { msPerMillion: ms / (n / 1e6), sink }
}

export default async function bench (ctx: BenchContext): Promise<Figures> {
  const n = 5_000_000
  const rng = createSeededRandom(42)
  // Warm both paths so the JIT has compiled them before timing.
  timeIt(n / 10, () => Math.random())
  timeIt(n / 10, () => rng.next())
  const base = timeIt(n, () => Math.random())
  const uniform = timeIt(n, () => rng.next())
  const normal = timeIt(n, () => rng.normal())
  ctx.print(`Math.random      ${base.msPerMillion.toFixed(2)} ms per million`)
  ctx.print(`seeded uniform   ${uniform.msPerMillion.toFixed(2)} ms per million`)
  ctx.print(`seeded normal    ${normal.msPerMillion.toFixed(2)} ms per million`)
  return {
    math_random_ms_per_million: round(base.msPerMillion),
    seeded_uniform_ms_per_million: round(uniform.msPerMillion),
    seeded_normal_ms_per_million: round(normal.msPerMillion),
    uniform_vs_math_random: round(base.msPerMillion / uniform.msPerMillion),
    normal_vs_math_random: round(base.msPerMillion / normal.msPerMillion)
  }
}

function round (x: number): number { return Math.round(x * 1000) / 1000 }
