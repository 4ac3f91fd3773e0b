/**
 * `npm run bench -- sim-scale [--sizes 4,8,16,32] [--transport tcp|memory] [--rounds 5] [--rows 1000]`
 *
 * Runs the networked MoE (no baselines) on N sites for each size, each size
 * in a child process of its own, and reports per N: bytes each site sends in
 * a round and in the setup (routing releases), the median round wall time
 * and the process's peak RSS. The growth exponents are least-squares slopes
 * in log-log: bytes per site per round should stay flat (exponent ~ 0).
 * Round wall time grows with N here because one process plays every site;
 * the baseline it is compared against is the smallest size of the same run.
 * 64 sites on the in-memory transport: `--sizes 64 --transport memory`.
 * `--census`: also count payload frames by protocol and kind (update sent,
 * update resent, model announced, model fetched), per site and round.
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { BenchContext, Figures } from './run.ts'
import { growthExponent, type ScaleFigures, type ScaleSpec } from '../sim/scale.ts'

const ONE = fileURLToPath(new URL('./_sim-scale-one.ts', import.meta.url))

function arg (args: string[], name: string, fallback: string): string {
  const i = args.indexOf(`--${name}`)
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback
}

async function runOne (spec: ScaleSpec): Promise<ScaleFigures> {
  const child = spawn(process.execPath, ['--import', 'tsx', ONE, JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
  const code = await new Promise<number | null>(resolve => child.on('close', resolve))
  const last = out.trim().split('\n').at(-1) ?? ''
  if (code !== 0) throw new Error(`the ${spec.sites}-site run exited with ${code}: ${last}`)
  return JSON.parse(last) as ScaleFigures
}

export default async function simScale (ctx: BenchContext): Promise<Figures> {
  const sizes = arg(ctx.args, 'sizes', '4,8,16,32').split(',').map(Number)
  if (sizes.some(n => !Number.isInteger(n) || n < 2 || n > 255)) throw new RangeError(`--sizes: integers 2..255, got ${arg(ctx.args, 'sizes', '')}`)
  const transport = arg(ctx.args, 'transport', 'tcp')
  if (transport !== 'tcp' && transport !== 'memory') throw new RangeError(`--transport: tcp or memory, got ${transport}`)
  const rounds = Number(arg(ctx.args, 'rounds', '5'))
  const rowsPerSite = Number(arg(ctx.args, 'rows', '1000'))
  const census = ctx.args.includes('--census')
  const results: ScaleFigures[] = []
  ctx.print(`sites  setup B/site  round B/site  final B/site  round s  setup s  peak RSS MB  RSS MB/site  accuracy`)
  for (const sites of sizes) {
    const r = await runOne({ sites, transport, rounds, rowsPerSite, testLimit: 2000, seed: 1, census })
    results.push(r)
    ctx.print(`${String(sites).padStart(5)}  ${String(r.setupBytesPerSite).padStart(12)}  ${String(r.roundBytesPerSite).padStart(12)}  ${String(r.publicationBytesPerSite).padStart(12)}  ${r.roundSeconds.toFixed(2).padStart(7)}  ${r.setupSeconds.toFixed(1).padStart(7)}  ${(r.peakRssBytes / 1e6).toFixed(0).padStart(11)}  ${(r.peakRssBytes / 1e6 / sites).toFixed(1).padStart(11)}  ${(r.accuracy * 100).toFixed(1).padStart(7)}%`)
  }
  // Every update and model frame of the run, per site and round: not split at commit events.
  const roundPayloadOf = (r: ScaleFigures): number => Object.entries(r.frames ?? {}).filter(([k]) => k.startsWith('update:') || k.startsWith('model:')).reduce((a, [, c]) => a + c.bytes, 0) / r.sites / rounds
  if (census) {
    ctx.print('frames per site per round (update and model protocols; whole run / N / rounds):')
    for (const r of results) {
      const per = Object.entries(r.frames ?? {}).filter(([k]) => k.startsWith('update:') || k.startsWith('model:'))
        .map(([k, c]) => `${k} ${(c.frames / r.sites / rounds).toFixed(2)} (${Math.round(c.bytes / r.sites / rounds)} B)`)
      ctx.print(`${String(r.sites).padStart(5)}  ${Math.round(roundPayloadOf(r))} B: ${per.join(', ')}`)
    }
  }
  const n = results.map(r => r.sites)
  const fit = (pick: (r: ScaleFigures) => number): number | null => results.length < 2 ? null : Number(growthExponent(n, results.map(pick)).toFixed(3))
  return {
    transport,
    rounds,
    rows_per_site: rowsPerSite,
    sizes: n,
    runs: results as unknown as unknown[],
    bytes_per_site_growth_exponent: fit(r => r.roundBytesPerSite),
    setup_bytes_per_site_growth_exponent: fit(r => r.setupBytesPerSite),
    publication_bytes_per_site_growth_exponent: fit(r => r.publicationBytesPerSite),
    round_time_growth_exponent: fit(r => r.roundSeconds),
    peak_rss_growth_exponent: fit(r => r.peakRssBytes),
    // Census only: update and model bytes of the whole run per site and round, not split at commit events.
    census_round_bytes_per_site_growth_exponent: census ? fit(roundPayloadOf) : null
  }
}
