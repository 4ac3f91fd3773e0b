/**
 * The whole density-routed MoE recipe for N sites in one process, without
 * the mesh: the routing releases, R rounds of FedAvg over the trunk and head
 * through coordinator/strategies (every update passed through the configured
 * compressor, so the aggregate is what the wire would deliver), then assembly
 * with density-router gates. Sites train every round from the committed
 * aggregate, so a lossy compressor changes the training, not only the byte
 * count; each site's compressor keeps its own error-feedback residual.
 * Evaluation at the chosen rounds assembles the committed shared part with
 * every site's current expert (as if published then). Deterministic from
 * the seed.
 *
 * Bytes are per site, one direction: each round's update as the compressor
 * encodes it, plus once the two routing releases (float32, as members here
 * receive them) and the expert (safetensors).
 */
import { createSeededRandom, createSilentLogger, type Logger } from '../../coordinator/components.ts'
import { DP_ROUTING, type RoutingConfig } from '../../coordinator/routing/config.ts'
import { epsilonForRho } from '../../coordinator/routing/dp.ts'
import { gatesFromScores, scoreRows } from '../../coordinator/routing/router.ts'
import { encodeSiteRelease } from '../../coordinator/routing/schema.ts'
import { createStrategy } from '../../coordinator/strategies/registry.ts'
import type { JsonValue, SiteUpdate } from '../../coordinator/strategies/types.ts'
import { encodeSafetensors } from '../../protocols/safetensors/index.ts'
import { flattenTensors, unflattenTensors, type TensorMap } from '../../protocols/tensors.ts'
import { FederationError } from '../errors.ts'
import { createMoeModel } from '../model/moe.ts'
import type { PrivacyLedger } from '../privacy/ledger.ts'
import { evaluateWithGates, installAssembly, optOutExperiment, oracleGates, ownerOfLabels, type AssembledEval, type OptOutResult } from './assemble-eval.ts'
import { createMoeLearner, type MoeLearner } from './learner.ts'
import { recipeInitialParams, recipeSpec } from './recipe.ts'
import { buildMemberRouter, momentsBytes, releaseRho, releaseSiteComponents, releaseSiteGlobal, sharedProjection, siteReleaseBytes, toFloat32Moments, toFloat32Release } from './routing-releases.ts'
import { finalOf, pseudoGradient, resolveOptions, siteCompressors, splitSites, type FederationRunOptions, type RoundRecord, type RunResult } from './run-common.ts'

export interface MoeRunOptions extends FederationRunOptions {
  /** Routers to assemble with, by name; the first is the headline. Default { dp: DP_ROUTING }. */
  routers?: Record<string, RoutingConfig>
  /** Run the opt-out experiment for every expert after the last round (default false). */
  optOut?: boolean
  /** Per site, the ledger its releases are charged to (default none: no accounting). */
  ledgers?: ReadonlyArray<PrivacyLedger | null>
  /** Federation name: seeds the shared PCA basis. */
  federation?: string
  logger?: Logger
}

export interface RouterOutcome {
  rounds: Array<RoundRecord & { routingAccuracy: number }>
  final: AssembledEval
  optOut: OptOutResult[]
  /** Per site: zCDP rho of both releases and the (epsilon, delta) it implies; null for exact statistics. */
  privacy: { rho: number, epsilon: number, delta: number } | null
  setupSeconds: number
}

export interface MoeBytes {
  /** Per site, per round: the update's wire bytes (the largest seen; top-k index gaps make it vary). */
  updatePerRound: number
  /** The update's wire bytes averaged over every site and round. */
  updateMean: number
  release1: number
  release2: number
  expert: number
  oneTime: number
}

export interface MoeRunResult extends RunResult {
  method: 'moe'
  byRouter: Record<string, RouterOutcome>
  /** Gates one-hot on the expert holding each label, after the last round: routing's upper bound. */
  oracle: AssembledEval
  bytes: MoeBytes
  /** The committed trunk and head after the last round: the aggregate of the decoded (lossy, when compressed) updates. */
  shared: TensorMap
}

/** One router's state during the run; its outcome is completed after the last round. */
interface Assembly { name: string, scores: Float64Array, gates: Float32Array, rounds: RouterOutcome['rounds'], privacy: RouterOutcome['privacy'], setupSeconds: number }

export async function runMoeFederation (options: MoeRunOptions): Promise<MoeRunResult> {
  const t0 = performance.now()
  const o = resolveOptions(options)
  const { train, test, groups, signal } = options
  const log = options.logger ?? createSilentLogger()
  const routers = Object.entries(options.routers ?? { dp: DP_ROUTING })
  if (routers.length === 0) throw new FederationError('at least one router config is needed')
  const E = groups.length
  const spec = recipeSpec({ inputDim: train.dim, classes: train.numClasses, experts: E, seed: o.seed, width: o.width, expertHidden: o.expertHidden, topK: o.topK })
  const sites = splitSites(train, groups, o.seed)
  const owner = ownerOfLabels(groups, train.numClasses)
  const federation = options.federation ?? `inprocess-${o.seed}`

  // Steps 1 and 2: the releases, once, before training; members use the float32 copies the wire carries.
  const assemblies: Assembly[] = []
  let release1 = 0
  let release2 = 0
  for (const [name, config] of routers) {
    const ts = performance.now()
    const siteRandom = (s: number): ReturnType<typeof createSeededRandom> => createSeededRandom(`${o.seed}/site-${s}`).fork(name)
    const ledgerOf = (s: number): PrivacyLedger | null => options.ledgers?.[s] ?? null
    const globals = []
    for (const s of sites) globals.push(toFloat32Moments(await releaseSiteGlobal({ rows: s.data.x, n: s.data.n, dim: s.data.dim }, config, { random: siteRandom(s.site), ledger: ledgerOf(s.site) }, { label: federation, ...(signal ? { signal } : {}) })))
    const projection = sharedProjection(globals, config, federation)
    const wire = []
    for (const s of sites) {
      const r = await releaseSiteComponents({ expert: s.site, rows: s.data.x, labels: s.data.y, n: s.data.n }, projection, config, { random: siteRandom(s.site), ledger: ledgerOf(s.site) }, { label: federation, ...(signal ? { signal } : {}) })
      const f32 = toFloat32Release(r)
      release2 = Math.max(release2, siteReleaseBytes(f32))
      wire.push(encodeSiteRelease(f32))
    }
    release1 = Math.max(...globals.map(momentsBytes))
    const router = buildMemberRouter(projection, wire, E, config)
    const scores = scoreRows(router, test.x, test.n)
    const gates = gatesFromScores(scores, test.n, E, { topK: o.topK })
    const rho = releaseRho(config)
    const privacy = config.privacy === null ? null : { rho: rho.global + rho.components, epsilon: epsilonForRho(rho.global + rho.components, config.privacy.delta), delta: config.privacy.delta }
    assemblies.push({ name, scores, gates, rounds: [], privacy, setupSeconds: (performance.now() - ts) / 1000 })
    log.info('routing ready', { router: name, seconds: (performance.now() - ts) / 1000 })
  }

  const initial = recipeInitialParams(spec)
  const learners: MoeLearner[] = sites.map(s => createMoeLearner({ spec, expert: s.site, data: s.source, lr: o.lr, batchSize: o.batchSize, initial }, { logger: log.child(`site-${s.site}`) }))
  const evalModel = createMoeModel(spec, initial)
  try {
    const template = learners[0]!.getShared()
    let global = flattenTensors(template)
    const compressors = siteCompressors(o.compression, E, global.length)
    const strategy = createStrategy({ kind: 'fedavg' })
    let state: JsonValue = null
    const expertBytes = Math.max(...learners.map(l => encodeSafetensors(l.expertParams()).length))
    const sent = new Float64Array(E)
    let updatePerRound = 0
    const oneTime = release1 + release2 + expertBytes

    const evaluateAt = (round: number): void => {
      installAssembly(evalModel, unflattenTensors(global, template), learners.map(l => l.expertParams()))
      const bytesSent = oneTime + Math.max(...sent)
      for (const a of assemblies) {
        const e = evaluateWithGates(evalModel, test, a.gates, owner)
        const rec = { round, accuracy: e.accuracy, loss: e.loss, bytesSent, routingAccuracy: e.routingAccuracy! }
        a.rounds.push(rec)
        options.onRecord?.(a.name === assemblies[0]!.name ? 'moe' : `moe:${a.name}`, rec)
      }
    }

    if (o.evalRounds.has(0)) evaluateAt(0)
    for (let round = 1; round <= o.rounds; round++) {
      signal?.throwIfAborted()
      const shared: TensorMap = unflattenTensors(global, template)
      const updates: SiteUpdate[] = []
      for (const [s, learner] of learners.entries()) {
        learner.setShared(shared)
        await learner.trainLocal(o.localSteps, signal ? { signal } : {})
        const c = compressors[s]!.compress(pseudoGradient(global, flattenTensors(learner.getShared())))
        sent[s] = sent[s]! + c.wireBytes
        updatePerRound = Math.max(updatePerRound, c.wireBytes)
        updates.push({ site: `site-${String(s).padStart(4, '0')}`, delta: c.decoded, samples: learner.sampleCount })
      }
      const r = strategy.aggregate(updates, global, state)
      global = r.next
      state = r.state
      if (o.evalRounds.has(round)) evaluateAt(round)
    }
    // Every site ends on the committed aggregate; the assembly uses it.
    installAssembly(evalModel, unflattenTensors(global, template), learners.map(l => l.expertParams()))
    const outcomes = assemblies.map((a): RouterOutcome => {
      const final = evaluateWithGates(evalModel, test, a.gates, owner)
      const optOut = options.optOut === true ? Array.from({ length: E }, (_, e) => optOutExperiment(evalModel, test, a.scores, groups, e, { topK: o.topK, full: final })) : []
      return { rounds: a.rounds, final, optOut, privacy: a.privacy, setupSeconds: a.setupSeconds }
    })
    const oracle = evaluateWithGates(evalModel, test, oracleGates(test.y, E, owner), owner)
    const head = outcomes[0]!
    return {
      method: 'moe',
      rounds: head.rounds,
      final: finalOf(head.final),
      seconds: (performance.now() - t0) / 1000,
      byRouter: Object.fromEntries(assemblies.map((a, i) => [a.name, outcomes[i]!])),
      oracle,
      bytes: { updatePerRound, updateMean: sent.reduce((x, y) => x + y, 0) / (E * o.rounds), release1, release2, expert: expertBytes, oneTime },
      shared: unflattenTensors(global, template)
    }
  } finally {
    for (const l of learners) l.dispose()
    evalModel.dispose()
  }
}
