/**
 * The baselines in a second thread, so a benchmark uses both cores: the
 * wasm backend is single-threaded in Node, so the MoE federation runs on the
 * calling thread while a worker (with its own backend) runs the baselines
 * on the same data, shared rather than copied (SharedArrayBuffer).
 * The worker runs the same code as the in-thread runners: same seeds, same
 * results.
 */
import { Worker } from 'node:worker_threads'
import type { LabeledData } from '../data/types.ts'
import { FederationError } from '../errors.ts'
import type { BackendPreference } from '../model/backend.ts'
import type { CentralizedResult, DenseFedAvgResult, LocalOnlyResult } from './baselines.ts'
import type { FederationRunOptions, RoundRecord } from './run-common.ts'

export type BaselineMethod = 'local-only' | 'fedavg-dense' | 'centralized'

/** What may cross the thread boundary: the options without callbacks or signals. */
export type PortableOptions = Omit<FederationRunOptions, 'signal' | 'onRecord'>

export interface BaselineJob {
  options: PortableOptions
  methods: BaselineMethod[]
  /** Per method, evaluation rounds replacing options.evalRounds. */
  evalRounds: Partial<Record<BaselineMethod, number[]>>
  backend: BackendPreference
}

export type BaselineResult = LocalOnlyResult | DenseFedAvgResult | CentralizedResult

export type BaselineReply =
  | { kind: 'record', method: string, record: RoundRecord }
  | { kind: 'result', result: BaselineResult }
  | { kind: 'done', backend: string }
  | { kind: 'error', name: string, message: string }

/** `data` with its arrays in SharedArrayBuffers (a no-op when they already are). */
export function sharedData (data: LabeledData): LabeledData {
  if (data.x.buffer instanceof SharedArrayBuffer && data.y.buffer instanceof SharedArrayBuffer) return data
  const x = new Float32Array(new SharedArrayBuffer(data.x.byteLength))
  x.set(data.x)
  const y = new Int32Array(new SharedArrayBuffer(data.y.byteLength))
  y.set(data.y)
  return { ...data, x, y }
}

export interface WorkerBaselines {
  'local-only'?: LocalOnlyResult
  'fedavg-dense'?: DenseFedAvgResult
  centralized?: CentralizedResult
  backend: string
}

/** Runs the given baselines in one worker thread, in order; resolves with their results. Abort terminates the thread. */
export async function runBaselinesInWorker (
  options: FederationRunOptions, methods: BaselineMethod[],
  extra: { evalRounds?: Partial<Record<BaselineMethod, number[]>>, backend?: BackendPreference } = {}
): Promise<WorkerBaselines> {
  const { signal, onRecord, ...rest } = options
  signal?.throwIfAborted()
  const job: BaselineJob = {
    options: { ...rest, train: sharedData(rest.train), test: sharedData(rest.test) },
    methods,
    evalRounds: extra.evalRounds ?? {},
    backend: extra.backend ?? 'wasm'
  }
  const worker = new Worker(new URL('./baseline-boot.mjs', import.meta.url), { workerData: job, execArgv: [] })
  const out: WorkerBaselines = { backend: '' }
  let onAbort = (): void => {}
  try {
    return await new Promise<WorkerBaselines>((resolve, reject) => {
      onAbort = () => { reject(signal!.reason instanceof Error ? signal!.reason : new DOMException('aborted', 'AbortError')) }
      signal?.addEventListener('abort', onAbort, { once: true })
      worker.on('message', (m: BaselineReply) => {
        if (m.kind === 'record') onRecord?.(m.method, m.record)
        else if (m.kind === 'result') (out as unknown as Record<string, BaselineResult>)[m.result.method] = m.result
        else if (m.kind === 'done') { out.backend = m.backend; resolve(out) }
        else reject(Object.assign(new FederationError(m.message), { name: m.name }))
      })
      worker.on('error', (err) => { reject(new FederationError(`baseline worker failed: ${err.message}`, { cause: err })) })
      worker.on('exit', (code) => { reject(new FederationError(`baseline worker exited (code ${code}) before finishing`)) })
    })
  } finally {
    signal?.removeEventListener('abort', onAbort)
    await worker.terminate()
  }
}
