/**
 * Messages between a WorkerTrainer (main thread) and its worker thread.
 * Both ends are our own code in one process, so these are plain typed
 * objects; the data they carry was validated before it was posted.
 */
import type { TensorMap } from '../../protocols/tensors.ts'
import type { LabeledData } from '../data/types.ts'
import type { BackendPreference } from '../model/backend.ts'
import type { ParamGroup } from '../model/params.ts'
import type { OptimizerConfigInput } from './optimizers.ts'

export interface WorkerSetup {
  spec: unknown
  initial?: TensorMap
  optimizer: OptimizerConfigInput
  frozen?: ParamGroup[]
  proxMu?: number
  auxLossWeight?: number
  routing?: 'learned' | { fixedExpert: number }
  backend: BackendPreference
  data: LabeledData
  /** Rows of `data` this trainer draws batches from (default: all). */
  indices?: Int32Array
  batchSeed: number | string
}

export type WorkerRequest =
  | { id: number, op: 'setup', setup: WorkerSetup }
  | { id: number, op: 'steps', steps: number, batchSize: number }
  | { id: number, op: 'getParams' }
  | { id: number, op: 'setParams', map: TensorMap, only?: ParamGroup[] }
  | { id: number, op: 'setProxAnchor', map: TensorMap | null }
  | { id: number, op: 'evaluate', data: LabeledData, gates?: Float32Array }
  | { id: number, op: 'abort', target: number }

export type WorkerReply =
  | { kind: 'result', id: number, value: unknown }
  | { kind: 'error', id: number, name: string, message: string }
  | { kind: 'progress', id: number, step: number, steps: number, totalSteps: number, loss: number, samples: number }
