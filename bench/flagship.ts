/**
 * The flagship: MNIST split pathologically over 5 sites (site s holds only
 * digits 2s and 2s+1), one expert per site, the density-routed MoE recipe
 * of docs/routing.md, scored on the full 10,000-image test set beside the
 * three baselines run in the same process on the same split: each site
 * alone (local-only), dense FedAvg (same rounds, its own bytes) and the MoE
 * trained centrally on the pooled rows (same total steps). Also the rounds
 * and bytes the MoE took to reach 95 % and 97 %, and the opt-out experiment.
 *
 * Args: --rounds N (default 200), --seed S (default 0), --routing dp|exact
 * (the headline router, default dp: epsilon = 8 per site; the other one is
 * measured beside it on the same trained model), --train-limit N (fewer
 * training rows, for a quick look), --backend auto|wasm|cpu|..., --threads 1|2
 * (default 2: the baselines run in a worker thread beside the MoE; their
 * results are bit-identical to running them on the main thread).
 */
import { createSilentLogger } from '../coordinator/components.ts'
import { DP_ROUTING, EXACT_ROUTING } from '../coordinator/routing/config.ts'
import { createLogger } from '../node/components.ts'
import { loadMnist } from '../node/data/mnist.ts'
import { runCentralized, runDenseFedAvg, runLocalOnly } from '../node/federation/baselines.ts'
import { runMoeFederation, type RouterOutcome } from '../node/federation/inprocess.ts'
import { runBaselinesInWorker, sharedData } from '../node/federation/parallel.ts'
import { labelGroups } from '../node/federation/recipe.ts'
import type { RoundRecord } from '../node/federation/run-common.ts'
import { parseBackendPreference, selectBackend } from '../node/model/backend.ts'
import type { BenchContext, Figures } from './run.ts'

function arg (args: string[], name: string, fallback: string): string {
  const i = args.indexOf(`--${name}`)
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback
}

const pct = (x: number): string => `${(100 * x).toFixed(2)}%`
const r4 = (x: number): number => Math.round(x * 10000) / 10000
const r2 = (x: number): number => Math.round(x * 100) / 100
const mb = (b: number): string => `${(b / 1e6).toFixed(2)} MB`

/** Every round up to 30 (to find when 95 % is reached), then every 5 to 100, then every 10. */
function schedule (rounds: number): number[] {
  const s = new Set<number>([rounds])
  for (let r = 1; r <= rounds; r++) if (r <= 30 || (r <= 100 && r % 5 === 0) || r % 10 === 0) s.add(r)
  return [...s].sort((a, b) => a - b)
}

function firstReaching (records: readonly RoundRecord[], target: number): RoundRecord | null {
  return records.find(r => r.accuracy >= target) ?? null
}

/** The last evaluated record with at most `bytes` sent. */
function atBytes (records: readonly RoundRecord[], bytes: number): RoundRecord | null {
  let best: RoundRecord | null = null
  for (const r of records) if (r.bytesSent <= bytes) best = r
  return best
}

export default async function bench (ctx: BenchContext): Promise<Figures> {
  const rounds = Number(arg(ctx.args, 'rounds', '200'))
  const seed = Number(arg(ctx.args, 'seed', '0'))
  const headline = arg(ctx.args, 'routing', 'dp')
  if (headline !== 'dp' && headline !== 'exact') throw new Error(`--routing must be dp or exact, got ${headline}`)
  const limit = ctx.args.includes('--train-limit') ? Number(arg(ctx.args, 'train-limit', '60000')) : undefined
  const backend = await selectBackend(parseBackendPreference(arg(ctx.args, 'backend', 'wasm')), createLogger('forgemesh:bench'))
  const threads = Number(arg(ctx.args, 'threads', '2'))
  if (threads !== 1 && threads !== 2) throw new Error(`--threads must be 1 or 2, got ${threads}`)
  const [loadedTrain, loadedTest] = await Promise.all([loadMnist({ split: 'train', ...(limit !== undefined ? { limit } : {}) }), loadMnist({ split: 'test' })])
  // One copy of the data, readable from both threads.
  const [train, test] = threads === 2 ? [sharedData(loadedTrain), sharedData(loadedTest)] : [loadedTrain, loadedTest]
  const groups = labelGroups(5, 2)
  const evalRounds = schedule(rounds)
  const centralRounds = evalRounds.filter(r => r % 10 === 0 || r === rounds || r === 25)
  const routers = headline === 'dp' ? { dp: DP_ROUTING, exact: EXACT_ROUTING } : { exact: EXACT_ROUTING, dp: DP_ROUTING }
  ctx.print(`MNIST ${train.n} train / ${test.n} test on ${backend.name}, ${threads} thread(s); 5 sites x 2 digits; ${rounds} rounds x 10 steps of 32, SGD 0.1; headline router ${headline}`)
  const onRecord = (method: string, r: RoundRecord): void => {
    if (r.round <= 30 && r.round % 5 !== 0 && r.round !== 1 && r.round !== rounds) return
    ctx.print(`${method.padEnd(13)} round ${String(r.round).padStart(4)}  ${pct(r.accuracy)}  loss ${r.loss.toFixed(4)}  ${mb(r.bytesSent)} per site`)
  }
  const base = { train, test, groups, rounds, seed, evalRounds, onRecord }

  const t0 = performance.now()
  const inWorker = threads === 2
    ? runBaselinesInWorker(base, ['fedavg-dense', 'centralized', 'local-only'], { evalRounds: { centralized: centralRounds, 'local-only': [rounds] }, backend: backend.name })
    : null
  // Without a second thread, the baselines follow the MoE on this one.
  inWorker?.catch(() => {})
  const moe = await runMoeFederation({ ...base, routers, optOut: true, logger: createSilentLogger() })
  const head: RouterOutcome = moe.byRouter[headline]!
  const other: RouterOutcome = moe.byRouter[headline === 'dp' ? 'exact' : 'dp']!
  ctx.print(`moe done in ${moe.seconds.toFixed(0)} s; routing accuracy ${headline} ${pct(head.final.routingAccuracy!)}, other ${pct(other.final.routingAccuracy!)}; oracle routing ${pct(moe.oracle.accuracy)}`)
  const w = inWorker === null ? null : await inWorker
  const dense = w?.['fedavg-dense'] ?? await runDenseFedAvg(base)
  const central = w?.centralized ?? await runCentralized({ ...base, evalRounds: centralRounds })
  const local = w?.['local-only'] ?? await runLocalOnly({ ...base, evalRounds: [rounds] })
  const wallSeconds = (performance.now() - t0) / 1000
  ctx.print(`fedavg-dense took ${dense.seconds.toFixed(0)} s (FFN hidden ${dense.hidden}); centralized ${central.seconds.toFixed(0)} s (learned router rows per expert ${central.routingHistogram.join('/')}); local-only ${local.seconds.toFixed(0)} s (per site ${local.perSite.map(p => pct(p.accuracy)).join(' ')})`)
  ctx.print(`all four methods: ${wallSeconds.toFixed(0)} s wall on ${threads} thread(s), ${(moe.seconds + dense.seconds + central.seconds + local.seconds).toFixed(0)} s of runner time`)

  const to95 = firstReaching(head.rounds, 0.95)
  const to97 = firstReaching(head.rounds, 0.97)
  const otherTo95 = firstReaching(other.rounds, 0.95)
  const otherTo97 = firstReaching(other.rounds, 0.97)
  const moeBytes = head.rounds[head.rounds.length - 1]!.bytesSent
  const denseBytes = dense.rounds[dense.rounds.length - 1]!.bytesSent
  const denseAtMoe25 = atBytes(dense.rounds, head.rounds.find(r => r.round === 25)?.bytesSent ?? 0)
  const opt = head.optOut
  for (const o of opt) ctx.print(`opt out expert ${o.expert} (digits ${o.labels.join(',')}): its digits ${pct(o.ownBefore)} -> ${pct(o.ownAfter)}; other digits ${o.othersChangePoints >= 0 ? '+' : ''}${o.othersChangePoints.toFixed(2)} pt (largest single digit ${o.maxOtherLabelChangePoints.toFixed(2)} pt)`)
  ctx.print(`MoE (${headline}) ${pct(moe.final.accuracy)} | local-only mean ${pct(local.final.accuracy)} max ${pct(local.maxAccuracy)} | dense FedAvg ${pct(dense.final.accuracy)} | centralized ${pct(central.final.accuracy)}`)
  ctx.print(`bytes per site: MoE ${mb(moeBytes)} (${moe.bytes.updatePerRound} B/round + ${moe.bytes.oneTime} B once), dense ${mb(denseBytes)} (${dense.updatePerRound} B/round)`)

  const rows = (rs: ReadonlyArray<RoundRecord>): Array<[number, number, number]> => rs.map(r => [r.round, r4(r.accuracy), r.bytesSent])
  return {
    backend: backend.name,
    rounds,
    seed,
    headline_router: headline,
    train_rows: train.n,
    test_rows: test.n,
    moe_accuracy: r4(moe.final.accuracy),
    local_only_mean_accuracy: r4(local.final.accuracy),
    local_only_max_accuracy: r4(local.maxAccuracy),
    fedavg_dense_accuracy: r4(dense.final.accuracy),
    centralized_accuracy: r4(central.final.accuracy),
    rounds_to_95: to95?.round ?? null,
    bytes_to_95: to95?.bytesSent ?? null,
    rounds_to_97: to97?.round ?? null,
    bytes_to_97: to97?.bytesSent ?? null,
    optout_site_digits_drop_points: r2(Math.min(...opt.map(o => o.dropPoints))),
    optout_other_digits_max_change_points: r2(Math.max(...opt.map(o => Math.abs(o.othersChangePoints)))),
    optout_other_single_digit_max_change_points: r2(Math.max(...opt.map(o => o.maxOtherLabelChangePoints))),
    optout_per_site: opt.map(o => ({ expert: o.expert, own_before: r4(o.ownBefore), own_after: r4(o.ownAfter), others_change_points: r2(o.othersChangePoints) })),
    moe_routing_accuracy: r4(head.final.routingAccuracy!),
    moe_other_router: headline === 'dp' ? 'exact' : 'dp',
    moe_other_router_accuracy: r4(other.final.accuracy),
    moe_other_router_routing_accuracy: r4(other.final.routingAccuracy!),
    moe_other_router_rounds_to_95: otherTo95?.round ?? null,
    moe_other_router_rounds_to_97: otherTo97?.round ?? null,
    moe_privacy_epsilon_per_site: moe.byRouter.dp!.privacy?.epsilon ?? null,
    moe_oracle_routing_accuracy: r4(moe.oracle.accuracy),
    moe_minus_dense_points: r2(100 * (moe.final.accuracy - dense.final.accuracy)),
    moe_minus_local_max_points: r2(100 * (moe.final.accuracy - local.maxAccuracy)),
    moe_bytes_per_site: moeBytes,
    moe_update_bytes_per_round: moe.bytes.updatePerRound,
    moe_release1_bytes: moe.bytes.release1,
    moe_release2_bytes: moe.bytes.release2,
    moe_expert_bytes: moe.bytes.expert,
    dense_bytes_per_site: denseBytes,
    dense_update_bytes_per_round: dense.updatePerRound,
    dense_at_moe25_bytes_round: denseAtMoe25?.round ?? null,
    dense_at_moe25_bytes_accuracy: denseAtMoe25 === null ? null : r4(denseAtMoe25.accuracy),
    centralized_routing_histogram: central.routingHistogram,
    centralized_best_accuracy: r4(Math.max(...central.rounds.map(r => r.accuracy))),
    moe_min_class_accuracy: r4(Math.min(...moe.final.perClassAccuracy)),
    threads,
    wall_seconds: Math.round(wallSeconds),
    seconds: { moe: Math.round(moe.seconds), dense: Math.round(dense.seconds), centralized: Math.round(central.seconds), local_only: Math.round(local.seconds) },
    runner_seconds_over_wall: r2((moe.seconds + dense.seconds + central.seconds + local.seconds) / wallSeconds),
    moe_curve: rows(head.rounds),
    moe_other_router_curve: rows(other.rounds),
    dense_curve: rows(dense.rounds),
    centralized_curve: rows(central.rounds)
  }
}
