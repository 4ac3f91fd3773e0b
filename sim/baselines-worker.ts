/**
 * The simulator's baselines, in a worker thread of their own so they train on
 * the second core while the sites of the networked run use the first. The
 * worker loads the same data and the same partition as the main thread (both
 * are seeded) and runs each baseline in process: nothing of theirs crosses a
 * network, so there is nothing to shape.
 */
import '../node/runtime.ts'
import { parentPort, workerData } from 'node:worker_threads'
import { runBaselines, type BaselineRequest } from './baselines.ts'

const port = parentPort
if (port === null) throw new Error('baselines-worker.ts must run in a worker thread')
runBaselines(workerData as BaselineRequest, (method, record) => { port.postMessage({ kind: 'record', method, record }) })
  .then(result => { port.postMessage({ kind: 'done', result }) })
  .catch((err: unknown) => { port.postMessage({ kind: 'error', error: { name: err instanceof Error ? err.name : 'Error', message: err instanceof Error ? err.message : String(err) } }) })
