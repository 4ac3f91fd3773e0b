/**
 * The three methods every simulator report sets beside forgemesh's MoE, on
 * the same sites' rows and the same test set: each site alone (local-only),
 * dense FedAvg of a model with the MoE's active parameter count, and the MoE
 * trained centrally on the pooled rows. They run in process on a worker
 * thread of their own (node/federation/parallel.ts), so they use the second
 * core while the sites of the networked run use the first. Nothing of theirs
 * crosses a network, so there is nothing to shape.
 */
import type { BackendPreference } from '../node/model/backend.ts'
import { runBaselinesInWorker as runInWorker } from '../node/federation/parallel.ts'
import type { RoundRecord as FederationRecord, RunResult } from '../node/federation/run-common.ts'
import { TopologyError } from './errors.ts'
import type { SimData } from './data.ts'
import type { Topology } from './topology.ts'

export type BaselineMethod = 'localOnly' | 'fedavgDense' | 'centralized'

export interface BaselineOutcome {
  rounds: FederationRecord[]
  accuracy: number
  loss: number
  /** Bytes one site sent over the whole run (uplink); 0 for methods that send nothing. */
  bytesPerSite: number
  /** fedavgDense: the aggregate each member receives every round (float32), as forgemesh's model protocol carries it. */
  modelBytesPerRound?: number
  wallSeconds: number
  /** localOnly: each site's own final figures. */
  perSite?: Array<{ site: number, accuracy: number, loss: number }>
}

export type BaselineResults = Record<BaselineMethod, BaselineOutcome>

export async function runBaselinesInWorker (topology: Topology, data: SimData, evalRounds: number[], backend: BackendPreference, signal?: AbortSignal): Promise<BaselineResults> {
  const f = topology.federation
  const m = f.model
  const results = await runInWorker({
    train: data.train,
    test: data.test,
    groups: topology.sites.map(s => s.labels ?? []),
    siteIndices: data.partition.indices,
    rounds: f.rounds,
    evalRounds,
    seed: topology.seed,
    localSteps: f.localSteps,
    batchSize: f.batchSize,
    lr: f.optimizer.lr,
    width: m.width,
    expertHidden: m.expertHidden,
    topK: m.topK,
    compression: f.compression,
    ...(signal !== undefined ? { signal } : {})
  }, ['local-only', 'fedavg-dense', 'centralized'], { backend })
  const local = results['local-only']
  const dense = results['fedavg-dense']
  const central = results.centralized
  if (local === undefined || dense === undefined || central === undefined) throw new TopologyError('the baseline worker finished without every baseline')
  return {
    localOnly: { ...outcome(local), perSite: local.perSite },
    fedavgDense: { ...outcome(dense), modelBytesPerRound: dense.modelBytes },
    centralized: outcome(central)
  }
}

function outcome (r: RunResult): BaselineOutcome {
  return { rounds: r.rounds, accuracy: r.final.accuracy, loss: r.final.loss, bytesPerSite: r.rounds.at(-1)?.bytesSent ?? 0, wallSeconds: r.seconds }
}
