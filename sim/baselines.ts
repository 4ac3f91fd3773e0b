/**
 * The three methods every simulator report sets beside forgemesh's MoE, on
 * the same sites' data and the same test set: each site alone (local-only),
 * dense FedAvg of a model with the MoE's active parameter count, and the MoE
 * trained centrally on the pooled rows. They run in process
 * (node/federation/baselines.ts); `runBaselinesInWorker` puts them on a
 * worker thread.
 */
import { Worker } from 'node:worker_threads'
import { createSilentLogger } from '../coordinator/components.ts'
import { selectBackend, type BackendPreference } from '../node/model/backend.ts'
import { runCentralized, runDenseFedAvg, runLocalOnly, type BaselineOptions } from '../node/federation/baselines.ts'
import type { RoundRecord as FederationRecord, RunResult } from '../node/federation/run-common.ts'
import { loadSimData } from './data.ts'
import { TopologyError } from './errors.ts'
import { parseTopology, type Topology, type TopologyInput } from './topology.ts'

export type BaselineMethod = 'localOnly' | 'fedavgDense' | 'centralized'

export interface BaselineRequest {
  topology: TopologyInput
  evalRounds: number[]
  backend: BackendPreference
}

export interface BaselineOutcome {
  rounds: FederationRecord[]
  accuracy: number
  loss: number
  /** Bytes one site sent over the whole run (uplink); 0 for methods that send nothing. */
  bytesPerSite: number
  wallSeconds: number
  /** localOnly: each site's own final figures. */
  perSite?: Array<{ site: number, accuracy: number, loss: number }>
}

export type BaselineResults = Record<BaselineMethod, BaselineOutcome>

export async function runBaselines (request: BaselineRequest, onRecord?: (method: BaselineMethod, record: FederationRecord) => void): Promise<BaselineResults> {
  const topology = parseTopology(request.topology)
  await selectBackend(request.backend, createSilentLogger())
  const data = await loadSimData(topology)
  const f = topology.federation
  const m = f.model
  const options: BaselineOptions = {
    train: data.train,
    test: data.test,
    groups: topology.sites.map(s => s.labels ?? []),
    siteIndices: data.partition.indices,
    rounds: f.rounds,
    evalRounds: request.evalRounds,
    seed: topology.seed,
    localSteps: f.localSteps,
    batchSize: f.batchSize,
    lr: f.optimizer.lr,
    width: m.width,
    expertHidden: m.expertHidden,
    topK: m.topK,
    compression: f.compression,
    logger: createSilentLogger()
  }
  const onAny = (method: BaselineMethod) => (_: string, record: FederationRecord): void => { onRecord?.(method, record) }
  const local = await runLocalOnly({ ...options, onRecord: onAny('localOnly') })
  const dense = await runDenseFedAvg({ ...options, onRecord: onAny('fedavgDense') })
  const central = await runCentralized({ ...options, onRecord: onAny('centralized') })
  return {
    localOnly: { ...outcome(local), perSite: local.perSite },
    fedavgDense: outcome(dense),
    centralized: outcome(central)
  }
}

function outcome (r: RunResult): BaselineOutcome {
  return { rounds: r.rounds, accuracy: r.final.accuracy, loss: r.final.loss, bytesPerSite: r.rounds.at(-1)?.bytesSent ?? 0, wallSeconds: r.seconds }
}

/** Runs the baselines on a worker thread; `onRecord` sees each evaluation as it happens. */
export async function runBaselinesInWorker (topology: Topology, evalRounds: number[], backend: BackendPreference, onRecord?: (method: BaselineMethod, record: FederationRecord) => void): Promise<BaselineResults> {
  const request: BaselineRequest = { topology: structuredClone(topology) as TopologyInput, evalRounds, backend }
  const worker = new Worker(new URL('./baselines-boot.mjs', import.meta.url), { workerData: request, execArgv: [] })
  try {
    return await new Promise<BaselineResults>((resolve, reject) => {
      worker.on('message', (msg: { kind: 'record', method: BaselineMethod, record: FederationRecord } | { kind: 'done', result: BaselineResults } | { kind: 'error', error: { name: string, message: string } }) => {
        if (msg.kind === 'record') onRecord?.(msg.method, msg.record)
        else if (msg.kind === 'done') resolve(msg.result)
        else reject(new TopologyError(`baselines failed: ${msg.error.name}: ${msg.error.message}`))
      })
      worker.on('error', (err) => { reject(new TopologyError(`baselines worker failed: ${err.message}`, { cause: err })) })
      worker.on('exit', (code) => { if (code !== 0) reject(new TopologyError(`baselines worker exited with code ${code}`)) })
    })
  } finally {
    await worker.terminate()
  }
}
