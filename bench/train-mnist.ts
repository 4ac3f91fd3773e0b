/**
 * The MoE trained centrally on all of MNIST: the accuracy it reaches in a
 * few minutes on 2 cores (target >= 97% on the 10,000 test images) and that
 * its router uses more than one expert. With --baselines, the dense model of
 * equal active parameter count and the FedAvg paper's 2NN get the same
 * budget of steps in the same run.
 *
 * Args: --steps N (default 3000, ~3.2 epochs of batch 64), --batch B,
 * --lr LR (Adam, default 0.001), --width D, --experts E, --backend auto|wasm|cpu|...,
 * --baselines.
 */
import { createSilentLogger } from '../coordinator/components.ts'
import { createLogger } from '../node/components.ts'
import { createBatchSource } from '../node/data/batches.ts'
import { loadMnist } from '../node/data/mnist.ts'
import type { LabeledData } from '../node/data/types.ts'
import { parseBackendPreference, selectBackend } from '../node/model/backend.ts'
import { createModel } from '../node/model/create.ts'
import { denseSpecFor, paramCounts } from '../node/model/params.ts'
import { mlp2nnSpec, parseMoeSpec, type ModelSpec } from '../node/model/spec.ts'
import { createTrainer, evaluate, type EvalResult } from '../node/train/trainer.ts'
import type { BenchContext, Figures } from './run.ts'

function arg (args: string[], name: string, fallback: string): string {
  const i = args.indexOf(`--${name}`)
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback
}

const pct = (x: number): string => `${(100 * x).toFixed(2)}%`

interface Run { spec: ModelSpec, final: EvalResult, seconds: number, stepsTo97: number | null }

async function train (ctx: BenchContext, name: string, spec: ModelSpec, trainData: LabeledData, test: LabeledData, o: { steps: number, batch: number, lr: number, every: number }): Promise<Run> {
  const model = createModel(spec)
  const trainer = createTrainer({ model, optimizer: { kind: 'adam', lr: o.lr } }, { logger: createSilentLogger() })
  const source = createBatchSource(trainData, { seed: 1 })
  let trainSeconds = 0
  let stepsTo97: number | null = null
  let final: EvalResult | undefined
  for (let done = 0; done < o.steps;) {
    const chunk = Math.min(o.every, o.steps - done)
    const t0 = performance.now()
    const r = await trainer.steps(source, chunk, o.batch)
    trainSeconds += (performance.now() - t0) / 1000
    done += chunk
    final = evaluate(model, test)
    if (stepsTo97 === null && final.accuracy >= 0.97) stepsTo97 = done
    ctx.print(`${name.padEnd(5)} step ${String(done).padStart(5)}  ${trainSeconds.toFixed(0).padStart(4)}s  train loss ${r.loss.toFixed(4)}  test ${pct(final.accuracy)}${final.routingHistogram !== undefined ? `  experts ${final.routingHistogram.join('/')}` : ''}`)
  }
  trainer.dispose()
  model.dispose()
  return { spec, final: final!, seconds: trainSeconds, stepsTo97 }
}

export default async function bench (ctx: BenchContext): Promise<Figures> {
  const steps = Number(arg(ctx.args, 'steps', '3000'))
  const batch = Number(arg(ctx.args, 'batch', '64'))
  const lr = Number(arg(ctx.args, 'lr', '0.001'))
  const width = Number(arg(ctx.args, 'width', '128'))
  const experts = Number(arg(ctx.args, 'experts', '4'))
  const backend = await selectBackend(parseBackendPreference(arg(ctx.args, 'backend', 'auto')), createLogger('forgemesh:bench'))
  const [trainData, test] = await Promise.all([loadMnist({ split: 'train' }), loadMnist({ split: 'test' })])
  const moe = parseMoeSpec({ inputDim: 784, width, expertHidden: width, experts, topK: 2, classes: 10, seed: 1 })
  ctx.print(`MNIST ${trainData.n} train / ${test.n} test on ${backend.name}; MoE 784-${width}, ${experts} experts of ${width}, top-2 (${paramCounts(moe).active} active of ${paramCounts(moe).total}); Adam lr ${lr}, batch ${batch}, ${steps} steps`)
  const o = { steps, batch, lr, every: 500 }
  const runs: Array<[string, Run]> = [['moe', await train(ctx, 'moe', moe, trainData, test, o)]]
  if (ctx.args.includes('--baselines')) {
    runs.push(['dense', await train(ctx, 'dense', denseSpecFor(moe), trainData, test, o)])
    runs.push(['2nn', await train(ctx, '2nn', mlp2nnSpec(1), trainData, test, o)])
  }
  const figures: Figures = { backend: backend.name, steps, batch, lr }
  for (const [name, r] of runs) {
    figures[`${name}_test_accuracy`] = Math.round(r.final.accuracy * 10000) / 10000
    figures[`${name}_train_seconds`] = Math.round(r.seconds)
    figures[`${name}_steps_to_97`] = r.stepsTo97
    if (r.final.routingHistogram !== undefined) {
      figures[`${name}_routing_histogram`] = r.final.routingHistogram
      figures[`${name}_experts_used`] = r.final.routingHistogram.filter(c => c > 0).length
    }
    figures[`${name}_min_class_accuracy`] = Math.round(Math.min(...r.final.perClassAccuracy) * 10000) / 10000
  }
  const m = runs[0]![1]
  ctx.print(`MoE: ${pct(m.final.accuracy)} test accuracy after ${m.seconds.toFixed(0)}s of training (target >= 97%); ${String(figures.moe_experts_used)} experts used: ${m.final.routingHistogram!.join('/')}`)
  return figures
}
