/**
 * Compression of the real MoE's shared parameters: bytes per site per round
 * for the trunk + head that the sites exchange (50,890 values), uncompressed
 * vs int8 blockwise vs top-k 1 % + int8 with error feedback, and the accuracy
 * each setting reaches after the same number of rounds, so that the saving
 * is not bought with quality. A fourth run, top-k 1 % + int8 without error
 * feedback, shows what the feedback is for (and fills the second thread).
 *
 * Every run is runMoeFederation (node/federation/inprocess.ts): the density-
 * routed MoE recipe of docs/routing.md on MNIST split 5 sites x 2 digits,
 * scored on all 10,000 test images with the headline router (DP, epsilon 8
 * per site). Each site's update goes through its own compressor and the
 * sites train on the aggregate of the decoded updates, so a lossy setting
 * changes the model, not only the byte count (test/compression-moe.test.ts).
 * Ratios are against the uncompressed run's measured bytes, in the same run.
 *
 * Args: --rounds N (default 60), --seed S (default 0), --threads 1|2
 * (default 2: half the runs in a worker thread with its own wasm backend;
 * results do not depend on the thread), --train-limit N (fewer rows, for a
 * quick look).
 */
import '../node/runtime.ts'
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'
import { createSilentLogger } from '../coordinator/components.ts'
import type { CompressionConfigInput } from '../coordinator/compression/combined.ts'
import { DP_ROUTING } from '../coordinator/routing/config.ts'
import { loadMnist } from '../node/data/mnist.ts'
import type { LabeledData } from '../node/data/types.ts'
import { runMoeFederation } from '../node/federation/inprocess.ts'
import { sharedData } from '../node/federation/parallel.ts'
import { labelGroups } from '../node/federation/recipe.ts'
import { selectBackend } from '../node/model/backend.ts'
import type { BenchContext, Figures } from './run.ts'

const SETTINGS = {
  uncompressed: { label: 'uncompressed float32', config: { kind: 'none' } },
  int8: { label: 'int8 blockwise (256)', config: { kind: 'int8', blockSize: 256 } },
  topk_int8: { label: 'top-k 1% + int8, error feedback', config: { kind: 'topk-int8', fraction: 0.01, blockSize: 256, errorFeedback: true } },
  topk_int8_no_ef: { label: 'top-k 1% + int8, no feedback', config: { kind: 'topk-int8', fraction: 0.01, blockSize: 256, errorFeedback: false } }
} satisfies Record<string, { label: string, config: CompressionConfigInput }>
type Key = keyof typeof SETTINGS
// Thread 1 runs the first list; with two threads the worker runs the second. The headline pair lands on one thread, so it finishes first.
const PLAN: [Key[], Key[]] = [['uncompressed', 'topk_int8'], ['int8', 'topk_int8_no_ef']]
// The last rounds are all evaluated, to show how much accuracy moves from one round to the next.
const TAIL = 5

interface Job { keys: Key[], train: LabeledData, test: LabeledData, rounds: number, seed: number }

interface Outcome {
  key: Key
  accuracy: number
  loss: number
  /** Accuracy at each of the last TAIL rounds. */
  tail: number[]
  curve: Array<[number, number]>
  routingAccuracy: number
  minClassAccuracy: number
  bytesMean: number
  bytesMax: number
  oneTime: number
  seconds: number
}

type Reply = { kind: 'outcome', outcome: Outcome } | { kind: 'done' } | { kind: 'error', name: string, message: string }

function evalRounds (rounds: number): number[] {
  const s = new Set<number>()
  for (let r = 10; r <= rounds; r += 10) s.add(r)
  for (let r = Math.max(1, rounds - TAIL + 1); r <= rounds; r++) s.add(r)
  return [...s].sort((a, b) => a - b)
}

async function runSetting (job: Omit<Job, 'keys'>, key: Key): Promise<Outcome> {
  const r = await runMoeFederation({
    train: job.train,
    test: job.test,
    groups: labelGroups(5, 2),
    rounds: job.rounds,
    seed: job.seed,
    evalRounds: evalRounds(job.rounds),
    compression: SETTINGS[key].config,
    routers: { dp: DP_ROUTING },
    logger: createSilentLogger()
  })
  return {
    key,
    accuracy: r.final.accuracy,
    loss: r.final.loss,
    tail: r.rounds.filter(x => x.round > job.rounds - TAIL).map(x => x.accuracy),
    curve: r.rounds.map(x => [x.round, x.accuracy]),
    routingAccuracy: r.byRouter.dp!.final.routingAccuracy!,
    minClassAccuracy: Math.min(...r.final.perClassAccuracy),
    bytesMean: r.bytes.updateMean,
    bytesMax: r.bytes.updatePerRound,
    oneTime: r.bytes.oneTime,
    seconds: r.seconds
  }
}

/** Runs `job` in a worker thread (this file, booted through tsx), reporting each outcome as it comes. */
async function runInWorker (job: Job, onOutcome: (o: Outcome) => void): Promise<void> {
  // A worker does not inherit the `--import tsx` hook for its entry file: register it first, then load this module.
  const boot = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then(m => { m.register(); return import(${JSON.stringify(import.meta.url)}) })`
  const worker = new Worker(boot, { eval: true, workerData: { compressionBench: job } })
  try {
    await new Promise<void>((resolve, reject) => {
      worker.on('message', (m: Reply) => {
        if (m.kind === 'outcome') onOutcome(m.outcome)
        else if (m.kind === 'done') resolve()
        else reject(Object.assign(new Error(m.message), { name: m.name }))
      })
      worker.on('error', reject)
      worker.on('exit', (code) => { reject(new Error(`compression worker exited (code ${code}) before finishing`)) })
    })
  } finally {
    await worker.terminate()
  }
}

// The worker side: the same runner, its own backend, outcomes posted back.
const workerJob = isMainThread ? undefined : (workerData as { compressionBench?: Job } | null)?.compressionBench
if (workerJob !== undefined && parentPort !== null) {
  const port = parentPort
  const post = (m: Reply): void => { port.postMessage(m) }
  try {
    await selectBackend('wasm', createSilentLogger())
    for (const key of workerJob.keys) post({ kind: 'outcome', outcome: await runSetting(workerJob, key) })
    post({ kind: 'done' })
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err))
    post({ kind: 'error', name: e.name, message: e.message })
  }
}

function arg (args: string[], name: string, fallback: string): string {
  const i = args.indexOf(`--${name}`)
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback
}

const pct = (x: number): string => `${(100 * x).toFixed(2)}%`
const r4 = (x: number): number => Math.round(x * 10000) / 10000
const r3 = (x: number): number => Math.round(x * 1000) / 1000
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length

export default async function bench (ctx: BenchContext): Promise<Figures> {
  const rounds = Number(arg(ctx.args, 'rounds', '60'))
  const seed = Number(arg(ctx.args, 'seed', '0'))
  const threads = Number(arg(ctx.args, 'threads', '2'))
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a positive integer, got ${rounds}`)
  if (threads !== 1 && threads !== 2) throw new Error(`--threads must be 1 or 2, got ${threads}`)
  const limit = ctx.args.includes('--train-limit') ? Number(arg(ctx.args, 'train-limit', '60000')) : undefined
  const backend = await selectBackend('wasm', createSilentLogger())
  const [loadedTrain, loadedTest] = await Promise.all([loadMnist({ split: 'train', ...(limit !== undefined ? { limit } : {}) }), loadMnist({ split: 'test' })])
  // One copy of the data, readable from both threads.
  const [train, test] = threads === 2 ? [sharedData(loadedTrain), sharedData(loadedTest)] : [loadedTrain, loadedTest]
  ctx.print(`MNIST ${train.n} train / ${test.n} test, 5 sites x 2 digits; ${rounds} rounds x 10 SGD steps of 32; ${backend.name}, ${threads} thread(s)`)

  const outcomes = new Map<Key, Outcome>()
  const show = (o: Outcome): void => {
    outcomes.set(o.key, o)
    ctx.print(`${SETTINGS[o.key].label.padEnd(32)} ${o.bytesMean.toFixed(0).padStart(7)} B/site/round  accuracy ${pct(o.accuracy)} (last ${o.tail.length} rounds ${o.tail.map(pct).join(' ')})  ${o.seconds.toFixed(0)} s`)
  }
  const t0 = performance.now()
  const [mine, theirs] = threads === 2 ? PLAN : [[...PLAN[0], ...PLAN[1]], []]
  const base = { train, test, rounds, seed }
  const inWorker = theirs.length > 0 ? runInWorker({ ...base, keys: theirs }, show) : Promise.resolve()
  inWorker.catch(() => {})
  for (const key of mine) show(await runSetting(base, key))
  await inWorker
  const wall = (performance.now() - t0) / 1000

  const keys = Object.keys(SETTINGS) as Key[]
  const get = (k: Key): Outcome => outcomes.get(k)!
  const none = get('uncompressed')
  const ratio = (k: Key): number => r3(none.bytesMean / get(k).bytesMean)
  const delta = (k: Key): number => r3(100 * (get(k).accuracy - none.accuracy))
  const tailDelta = (k: Key): number => r3(100 * (mean(get(k).tail) - mean(none.tail)))
  const wobble = r3(100 * (Math.max(...none.tail) - Math.min(...none.tail)))
  for (const k of ['int8', 'topk_int8', 'topk_int8_no_ef'] as const) {
    ctx.print(`${SETTINGS[k].label.padEnd(32)} ratio ${ratio(k).toFixed(1).padStart(6)}x  accuracy ${delta(k) >= 0 ? '+' : ''}${delta(k).toFixed(2)} points (mean of last ${none.tail.length}: ${tailDelta(k) >= 0 ? '+' : ''}${tailDelta(k).toFixed(2)})`)
  }
  // Per site over the whole run: the one-time routing releases and expert, plus every round's update.
  const total = (k: Key): number => Math.round(get(k).oneTime + rounds * get(k).bytesMean)
  ctx.print(`per site over ${rounds} rounds, one-time bytes included: ${keys.map(k => `${k} ${(total(k) / 1e6).toFixed(2)} MB`).join(', ')}`)
  ctx.print(`uncompressed accuracy moved ${wobble.toFixed(2)} points over its last ${none.tail.length} rounds; one-time bytes per site (routing releases + expert) ${none.oneTime}`)
  ctx.print(`${wall.toFixed(0)} s wall, ${[...outcomes.values()].reduce((s, o) => s + o.seconds, 0).toFixed(0)} s of runner time`)

  const per = <T>(f: (o: Outcome) => T): Record<Key, T> => Object.fromEntries(keys.map(k => [k, f(get(k))])) as Record<Key, T>
  return {
    backend: backend.name,
    split: '5 sites x 2 digits',
    rounds,
    seed,
    train_rows: train.n,
    test_rows: test.n,
    shared_params: (none.bytesMean - 16) / 4,
    bytes_per_site_per_round: per(o => r3(o.bytesMean)),
    max_bytes_per_site_per_round: per(o => o.bytesMax),
    one_time_bytes_per_site: none.oneTime,
    accuracy: per(o => r4(o.accuracy)),
    loss: per(o => r4(o.loss)),
    total_bytes_per_site: per(o => total(o.key)),
    topk_int8_total_ratio: r3(total('uncompressed') / total('topk_int8')),
    accuracy_last_rounds: per(o => o.tail.map(r4)),
    routing_accuracy: per(o => r4(o.routingAccuracy)),
    min_class_accuracy: per(o => r4(o.minClassAccuracy)),
    curves: per(o => o.curve.map(([r, a]) => [r, r4(a)])),
    uncompressed_last_rounds_spread_points: wobble,
    int8_accuracy_delta_points: delta('int8'),
    topk_int8_no_ef_accuracy_delta_points: delta('topk_int8_no_ef'),
    topk_int8_tail_mean_delta_points: tailDelta('topk_int8'),
    threads,
    wall_seconds: Math.round(wall),
    int8_ratio: ratio('int8'),
    topk_int8_ratio: ratio('topk_int8'),
    topk_int8_accuracy_delta_points: delta('topk_int8')
  }
}
