/**
 * The three baselines of the flagship, on the same split, seeds and step
 * budget as runMoeFederation:
 *   local-only   each site trains the recipe's MoE (its own expert) on its own
 *                rows for R x H steps, and is scored alone on the whole test set;
 *   dense FedAvg the dense model of node/model (denseSpecFor: the MoE's active
 *                parameter count), every parameter averaged, every site every round;
 *   centralized  the MoE with its learned top-k router on the pooled rows,
 *                sites x R x H steps (the federation's total).
 */
import { createSilentLogger, type Logger } from '../../coordinator/components.ts'
import { partitionByLabelGroups } from '../../coordinator/partition.ts'
import { createStrategy } from '../../coordinator/strategies/registry.ts'
import type { JsonValue, SiteUpdate } from '../../coordinator/strategies/types.ts'
import { flattenTensors, unflattenTensors } from '../../protocols/tensors.ts'
import { createBatchSource } from '../data/batches.ts'
import type { LabeledData } from '../data/types.ts'
import { createDenseModel } from '../model/dense.ts'
import { createMoeModel } from '../model/moe.ts'
import { denseSpecFor } from '../model/params.ts'
import type { MoeSpec } from '../model/spec.ts'
import { createTrainer } from '../train/trainer.ts'
import { evaluate } from '../train/evaluate.ts'
import { fixedGates } from './assemble-eval.ts'
import { createMoeLearner } from './learner.ts'
import { recipeInitialParams, recipeSpec } from './recipe.ts'
import { finalOf, pseudoGradient, resolveOptions, siteCompressors, splitSites, type FederationRunOptions, type ResolvedOptions, type RoundRecord, type RunResult } from './run-common.ts'

export interface BaselineOptions extends FederationRunOptions {
  logger?: Logger
}

interface Setup {
  t0: number
  o: ResolvedOptions
  log: Logger
  /** Sites, one expert each. */
  E: number
  /** The recipe's MoE for E experts (the dense baseline is sized from it). */
  spec: MoeSpec
  train: LabeledData
  test: LabeledData
  groups: number[][]
  signal: AbortSignal | undefined
}

/** What every baseline resolves first, the same way. */
function setup (options: BaselineOptions): Setup {
  const t0 = performance.now()
  const o = resolveOptions(options)
  const { train, test, groups, signal } = options
  const log = options.logger ?? createSilentLogger()
  const E = options.siteIndices?.length ?? groups.length
  const spec = recipeSpec({ inputDim: train.dim, classes: train.numClasses, experts: E, seed: o.seed, width: o.width, expertHidden: o.expertHidden, topK: o.topK })
  return { t0, o, log, E, spec, train, test, groups, signal }
}

/** Appends one evaluation's record and reports it. */
function record (options: BaselineOptions, method: string, rounds: RoundRecord[], round: number, e: { accuracy: number, loss: number }, bytesSent: number): void {
  const rec = { round, accuracy: e.accuracy, loss: e.loss, bytesSent }
  rounds.push(rec)
  options.onRecord?.(method, rec)
}

const secondsSince = (t0: number): number => (performance.now() - t0) / 1000

export interface LocalOnlyResult extends RunResult {
  method: 'local-only'
  /** Each site's model alone on the whole test set, after R x H steps. */
  perSite: Array<{ site: number, accuracy: number, loss: number }>
  /** Mean over sites (rounds[] and final hold the mean; perClassAccuracy is the mean per class). */
  maxAccuracy: number
}

/** Each site alone. Nothing is sent. Records hold the mean over sites. */
export async function runLocalOnly (options: BaselineOptions): Promise<LocalOnlyResult> {
  const { t0, o, log, E, spec, train, test, groups, signal } = setup(options)
  const initial = recipeInitialParams(spec)
  const sites = splitSites(train, groups, o.seed, options.siteIndices)
  const evalAt = [...o.evalRounds].sort((a, b) => a - b)
  const sums = new Map<number, { acc: number, loss: number, perClass: number[] }>()
  const perSite: LocalOnlyResult['perSite'] = []
  for (const s of sites) {
    const learner = createMoeLearner({ spec, expert: s.site, data: s.source, lr: o.lr, batchSize: o.batchSize, initial }, { logger: log.child(`local-${s.site}`) })
    try {
      const gates = fixedGates(test.n, E, s.site)
      let done = 0
      for (const round of evalAt) {
        if (round > done) await learner.trainLocal((round - done) * o.localSteps, signal ? { signal } : {})
        done = round
        const e = evaluate(learner.model, test, { gates })
        const acc = sums.get(round) ?? { acc: 0, loss: 0, perClass: new Array<number>(test.numClasses).fill(0) }
        acc.acc += e.accuracy / E
        acc.loss += e.loss / E
        e.perClassAccuracy.forEach((v, c) => { acc.perClass[c]! += (Number.isNaN(v) ? 0 : v) / E })
        sums.set(round, acc)
        if (round === o.rounds) perSite.push({ site: s.site, accuracy: e.accuracy, loss: e.loss })
      }
    } finally {
      learner.dispose()
    }
  }
  const rounds = evalAt.map(round => ({ round, accuracy: sums.get(round)!.acc, loss: sums.get(round)!.loss, bytesSent: 0 }))
  for (const r of rounds) options.onRecord?.('local-only', r)
  const last = sums.get(o.rounds)!
  return {
    method: 'local-only',
    rounds,
    final: { accuracy: last.acc, loss: last.loss, perClassAccuracy: last.perClass },
    perSite,
    maxAccuracy: Math.max(...perSite.map(p => p.accuracy)),
    seconds: secondsSince(t0)
  }
}

export interface DenseFedAvgResult extends RunResult {
  method: 'fedavg-dense'
  /** Per site, per round: the update's wire bytes. */
  updatePerRound: number
  /** The committed aggregate as a mesh sends it to each member every round (float32). */
  modelBytes: number
  hidden: number
}

/**
 * FedAvg of the dense model. Plain SGD keeps no state, so one model and one
 * trainer serve every site in turn (loaded with the round's global, trained
 * on that site's batches): the same arithmetic as a model per site.
 */
export async function runDenseFedAvg (options: BaselineOptions): Promise<DenseFedAvgResult> {
  const { t0, o, log, E, spec, train, test, groups, signal } = setup(options)
  const dense = denseSpecFor(spec)
  const sites = splitSites(train, groups, o.seed, options.siteIndices)
  const model = createDenseModel(dense, recipeInitialParams(dense))
  const trainer = createTrainer({ model, optimizer: { kind: 'sgd', lr: o.lr } }, { logger: log })
  try {
    const template = model.getParams()
    let global = flattenTensors(template)
    const compressors = siteCompressors(o.compression, E, global.length)
    const strategy = createStrategy({ kind: 'fedavg' })
    let state: JsonValue = null
    let sent = 0
    let updatePerRound = 0
    const rounds: RoundRecord[] = []
    const evalAt = (round: number): void => {
      model.setParams(unflattenTensors(global, template))
      record(options, 'fedavg-dense', rounds, round, evaluate(model, test), sent)
    }
    if (o.evalRounds.has(0)) evalAt(0)
    for (let round = 1; round <= o.rounds; round++) {
      signal?.throwIfAborted()
      const updates: SiteUpdate[] = []
      let roundMax = 0
      for (const s of sites) {
        model.setParams(unflattenTensors(global, template))
        await trainer.steps(s.source, o.localSteps, o.batchSize, signal ? { signal } : {})
        const c = compressors[s.site]!.compress(pseudoGradient(global, flattenTensors(model.getParams())))
        roundMax = Math.max(roundMax, c.wireBytes)
        updates.push({ site: `site-${String(s.site).padStart(4, '0')}`, delta: c.decoded, samples: s.source.size })
      }
      sent += roundMax
      updatePerRound = Math.max(updatePerRound, roundMax)
      const r = strategy.aggregate(updates, global, state)
      global = r.next
      state = r.state
      if (o.evalRounds.has(round)) evalAt(round)
    }
    model.setParams(unflattenTensors(global, template))
    const final = evaluate(model, test)
    return { method: 'fedavg-dense', rounds, final: finalOf(final), updatePerRound, modelBytes: 4 * global.length, hidden: dense.hidden, seconds: secondsSince(t0) }
  } finally {
    trainer.dispose()
    model.dispose()
  }
}

export interface CentralizedResult extends RunResult {
  method: 'centralized'
  /** Rows per expert on the test set, from the learned router. */
  routingHistogram: number[]
}

/** The MoE with its learned router on the pooled rows of all sites; "round" r = r x sites x H steps. Nothing is sent. */
export async function runCentralized (options: BaselineOptions): Promise<CentralizedResult> {
  const { t0, o, log, E, spec, train, test, groups, signal } = setup(options)
  // The union of the sites' rows: the same examples the federation trains on.
  const pooled = Int32Array.from((options.siteIndices ?? partitionByLabelGroups(train.y, groups).indices).flatMap(ix => Array.from(ix)))
  const source = createBatchSource(train, { seed: `${o.seed}/pooled`, indices: pooled })
  const model = createMoeModel(spec, recipeInitialParams(spec))
  const trainer = createTrainer({ model, optimizer: { kind: 'sgd', lr: o.lr } }, { logger: log })
  try {
    const rounds: RoundRecord[] = []
    const stepsPerRound = E * o.localSteps
    const evalAt = (round: number): void => { record(options, 'centralized', rounds, round, evaluate(model, test), 0) }
    if (o.evalRounds.has(0)) evalAt(0)
    for (let round = 1; round <= o.rounds; round++) {
      await trainer.steps(source, stepsPerRound, o.batchSize, signal ? { signal } : {})
      if (o.evalRounds.has(round)) evalAt(round)
    }
    const final = evaluate(model, test)
    return { method: 'centralized', rounds, final: finalOf(final), routingHistogram: final.routingHistogram ?? [], seconds: secondsSince(t0) }
  } finally {
    trainer.dispose()
    model.dispose()
  }
}
