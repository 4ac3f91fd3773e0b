/**
 * A trainer in a worker thread. tfjs's wasm backend is single-threaded in
 * Node, so a site that wants both cores (or a simulator running two sites)
 * runs one WorkerTrainer per core; each has its own backend, model,
 * optimizer state and batch source. Data handed over in SharedArrayBuffers
 * (see shareLabeledData) is shared between threads, not copied.
 */
import { Worker } from 'node:worker_threads'
import type { Logger } from '../../coordinator/components.ts'
import type { TensorMap } from '../../protocols/tensors.ts'
import type { LabeledData } from '../data/types.ts'
import { TrainerError } from '../errors.ts'
import type { BackendInfo } from '../model/backend.ts'
import { parseModelSpec } from '../model/spec.ts'
import type { ParamGroup } from '../model/params.ts'
import type { EvalResult } from './evaluate.ts'
import { parseOptimizerConfig } from './optimizers.ts'
import type { StepsResult, TrainProgress } from './trainer.ts'
import type { WorkerReply, WorkerRequest, WorkerSetup } from './worker-protocol.ts'

export type WorkerTrainerInit = Omit<WorkerSetup, 'backend'> & { backend?: WorkerSetup['backend'] }

export interface WorkerTrainerComponents {
  logger: Logger
  onProgress?: (p: TrainProgress) => void
}

export interface WorkerTrainer {
  /** Starts the thread, loads the backend and builds model, trainer and batches. Idempotent. */
  start: (options?: { signal?: AbortSignal }) => Promise<BackendInfo>
  /** Ends the thread; pending calls reject with TrainerError. Idempotent. */
  stop: () => Promise<void>
  steps: (steps: number, batchSize: number, options?: { signal?: AbortSignal }) => Promise<StepsResult>
  getParams: (options?: { signal?: AbortSignal }) => Promise<TensorMap>
  setParams: (map: TensorMap, options?: { only?: ParamGroup[], signal?: AbortSignal }) => Promise<void>
  setProxAnchor: (map: TensorMap | null, options?: { signal?: AbortSignal }) => Promise<void>
  evaluate: (data: LabeledData, options?: { gates?: Float32Array, signal?: AbortSignal }) => Promise<EvalResult>
}

/** A copy of `data` in SharedArrayBuffers, so several workers read one copy. */
export function shareLabeledData (data: LabeledData): LabeledData {
  const x = new Float32Array(new SharedArrayBuffer(data.x.byteLength))
  x.set(data.x)
  const y = new Int32Array(new SharedArrayBuffer(data.y.byteLength))
  y.set(data.y)
  return { ...data, x, y }
}

type Pending = { resolve: (v: unknown) => void, reject: (e: Error) => void, progress?: (p: TrainProgress) => void }

export function createWorkerTrainer (init: WorkerTrainerInit, components: WorkerTrainerComponents): WorkerTrainer {
  // Fail here, in the caller's thread, rather than inside the worker.
  parseModelSpec(init.spec)
  parseOptimizerConfig(init.optimizer)
  const log = components.logger
  let worker: Worker | undefined
  let started: Promise<BackendInfo> | undefined
  let nextId = 1
  const pending = new Map<number, Pending>()

  const failAll = (err: Error): void => {
    for (const p of pending.values()) p.reject(err)
    pending.clear()
  }

  const call = async <T>(build: (id: number) => WorkerRequest, signal?: AbortSignal, progress?: (p: TrainProgress) => void): Promise<T> => {
    signal?.throwIfAborted()
    const w = worker
    if (w === undefined) throw new TrainerError('worker trainer is not started')
    const id = nextId++
    const req = build(id)
    return await new Promise<T>((resolve, reject) => {
      const onAbort = (): void => { w.postMessage({ id: nextId++, op: 'abort', target: id } satisfies WorkerRequest) }
      signal?.addEventListener('abort', onAbort, { once: true })
      const done = (): void => { signal?.removeEventListener('abort', onAbort) }
      pending.set(id, {
        resolve: (v) => { done(); resolve(v as T) },
        reject: (e) => { done(); reject(e) },
        ...(progress !== undefined ? { progress } : {})
      })
      w.postMessage(req)
    })
  }

  const onMessage = (m: WorkerReply): void => {
    const p = pending.get(m.id)
    if (p === undefined) return
    if (m.kind === 'progress') {
      const { kind: _k, id: _i, ...progress } = m
      p.progress?.(progress)
      return
    }
    pending.delete(m.id)
    if (m.kind === 'result') p.resolve(m.value)
    else if (m.name === 'AbortError') p.reject(new DOMException(m.message, 'AbortError'))
    else p.reject(Object.assign(new TrainerError(m.message), { name: m.name }))
  }

  const trainer: WorkerTrainer = {
    start: async (options = {}) => {
      if (started !== undefined) return await started
      options.signal?.throwIfAborted()
      // A young generation large enough for many steps' tfjs bookkeeping (~2.6 MB a step): fewer scavenges,
      // whose helper threads otherwise take the other core from a second trainer (two_workers_vs_one 1.63 -> 1.75-1.86).
      const w = new Worker(new URL('./worker-boot.mjs', import.meta.url), { execArgv: [], resourceLimits: { maxYoungGenerationSizeMb: 256 } })
      worker = w
      w.on('message', onMessage)
      w.on('error', (err) => {
        log.error('trainer worker failed', { error: err })
        failAll(new TrainerError(`trainer worker failed: ${err.message}`, { cause: err }))
      })
      w.on('exit', (code) => {
        if (worker === w) worker = undefined
        failAll(new TrainerError(`trainer worker exited (code ${code})`))
      })
      const { backend, ...rest } = init
      const setup: WorkerSetup = { ...rest, backend: backend ?? 'wasm' }
      started = call<BackendInfo>(id => ({ id, op: 'setup', setup }), options.signal)
      try {
        const info = await started
        log.info('trainer worker started', { backend: info.name, threadId: w.threadId })
        return info
      } catch (err) {
        started = undefined
        await trainer.stop()
        throw err
      }
    },
    stop: async () => {
      const w = worker
      worker = undefined
      started = undefined
      if (w === undefined) return
      await w.terminate()
      failAll(new TrainerError('trainer worker was stopped'))
    },
    steps: async (steps, batchSize, options = {}) => await call<StepsResult>(id => ({ id, op: 'steps', steps, batchSize }), options.signal, components.onProgress),
    getParams: async (options = {}) => await call<TensorMap>(id => ({ id, op: 'getParams' }), options.signal),
    setParams: async (map, options = {}) => { await call(id => ({ id, op: 'setParams', map, ...(options.only !== undefined ? { only: options.only } : {}) }), options.signal) },
    setProxAnchor: async (map, options = {}) => { await call(id => ({ id, op: 'setProxAnchor', map }), options.signal) },
    evaluate: async (data, options = {}) => await call<EvalResult>(id => ({ id, op: 'evaluate', data, ...(options.gates !== undefined ? { gates: options.gates } : {}) }), options.signal)
  }
  return trainer
}
