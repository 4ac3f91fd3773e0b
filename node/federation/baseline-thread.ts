/**
 * The worker-thread side of runBaselinesInWorker: its own tfjs backend, then
 * the requested baseline runners one after another, each evaluation posted
 * back as it happens, the results at the end. One job per thread.
 */
import '../runtime.ts'
import { parentPort, workerData } from 'node:worker_threads'
import { createSilentLogger } from '../../coordinator/components.ts'
import { FederationError } from '../errors.ts'
import { selectBackend } from '../model/backend.ts'
import { runCentralized, runDenseFedAvg, runLocalOnly } from './baselines.ts'
import type { BaselineJob, BaselineReply } from './parallel.ts'

const port = parentPort
if (port === null) throw new FederationError('baseline-thread.ts must run in a worker thread')
const job = workerData as BaselineJob
const post = (m: BaselineReply): void => { port.postMessage(m) }

try {
  const backend = await selectBackend(job.backend, createSilentLogger())
  const onRecord: NonNullable<Parameters<typeof runDenseFedAvg>[0]['onRecord']> = (method, record) => { post({ kind: 'record', method, record }) }
  for (const m of job.methods) {
    const options = { ...job.options, ...(job.evalRounds[m] !== undefined ? { evalRounds: job.evalRounds[m] } : {}), onRecord }
    switch (m) {
      case 'local-only': post({ kind: 'result', result: await runLocalOnly(options) }); break
      case 'fedavg-dense': post({ kind: 'result', result: await runDenseFedAvg(options) }); break
      case 'centralized': post({ kind: 'result', result: await runCentralized(options) }); break
      default: { const never: never = m; throw new FederationError(`unknown baseline ${String(never)}`) }
    }
  }
  post({ kind: 'done', backend: backend.name })
} catch (err) {
  const e = err instanceof Error ? err : new Error(String(err))
  post({ kind: 'error', name: e.name, message: e.message })
}
