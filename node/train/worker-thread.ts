/**
 * The worker-thread side of a WorkerTrainer: its own tfjs backend (wasm by
 * default; the wasm backend is single-threaded in Node, so one trainer per
 * thread is how a site uses both cores), its own model, trainer and batches.
 * Requests are handled one at a time, except 'abort', which cancels the
 * running steps() between two steps.
 */
import '../runtime.ts'
import { parentPort } from 'node:worker_threads'
import { createSilentLogger } from '../../coordinator/components.ts'
import { createBatchSource } from '../data/batches.ts'
import type { BatchSource } from '../data/types.ts'
import { selectBackend } from '../model/backend.ts'
import { createModel } from '../model/create.ts'
import type { ClassifierModel } from '../model/model.ts'
import { TrainerError } from '../errors.ts'
import { createTrainer, evaluate, type Trainer } from './trainer.ts'
import type { WorkerReply, WorkerRequest } from './worker-protocol.ts'

const port = parentPort
if (port === null) throw new TrainerError('worker-thread.ts must run in a worker thread')

let model: ClassifierModel | undefined
let trainer: Trainer | undefined
let source: BatchSource | undefined
const running = new Map<number, AbortController>()
// The steps() request that progress reports belong to.
let stepsId = 0

const reply = (m: WorkerReply): void => {
  // Parameter maps are fresh copies: move their buffers instead of cloning them.
  const transfer = m.kind === 'result' && m.value instanceof Map ? [...(m.value as Map<string, { data: Float32Array }>).values()].map(t => t.data.buffer as ArrayBuffer) : []
  port.postMessage(m, transfer)
}

function ready (): { model: ClassifierModel, trainer: Trainer, source: BatchSource } {
  if (model === undefined || trainer === undefined || source === undefined) throw new TrainerError('worker trainer is not set up')
  return { model, trainer, source }
}

async function handle (req: Exclude<WorkerRequest, { op: 'abort' }>): Promise<unknown> {
  switch (req.op) {
    case 'setup': {
      const s = req.setup
      const backend = await selectBackend(s.backend, createSilentLogger())
      model = createModel(s.spec, s.initial)
      trainer = createTrainer({ model, optimizer: s.optimizer, frozen: s.frozen, proxMu: s.proxMu, auxLossWeight: s.auxLossWeight, routing: s.routing }, {
        logger: createSilentLogger(),
        onProgress: (p) => { reply({ kind: 'progress', id: stepsId, ...p }) }
      })
      source = createBatchSource(s.data, s.indices === undefined ? { seed: s.batchSeed } : { seed: s.batchSeed, indices: s.indices })
      return backend
    }
    case 'steps': {
      const r = ready()
      const ac = new AbortController()
      running.set(req.id, ac)
      stepsId = req.id
      try {
        return await r.trainer.steps(r.source, req.steps, req.batchSize, { signal: ac.signal })
      } finally {
        running.delete(req.id)
      }
    }
    case 'getParams': return ready().model.getParams()
    case 'setParams': ready().model.setParams(req.map, req.only === undefined ? {} : { only: req.only }); return null
    case 'setProxAnchor': ready().trainer.setProxAnchor(req.map); return null
    case 'evaluate': return evaluate(ready().model, req.data, req.gates === undefined ? {} : { gates: req.gates })
    default: { const never: never = req; throw new TrainerError(`unknown request ${JSON.stringify(never)}`) }
  }
}

// One request at a time, in order; aborts bypass the queue.
let queue = Promise.resolve()
port.on('message', (req: WorkerRequest) => {
  if (req.op === 'abort') {
    running.get(req.target)?.abort()
    return
  }
  queue = queue.then(async () => {
    try {
      reply({ kind: 'result', id: req.id, value: await handle(req) })
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err))
      reply({ kind: 'error', id: req.id, name: e.name, message: e.message })
    }
  })
})
