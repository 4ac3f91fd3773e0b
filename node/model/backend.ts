/**
 * The compute backend ladder: tfjs-node-gpu (CUDA), tfjs-node (libtensorflow
 * on the CPU), the WebAssembly backend (ships inside its npm package), the
 * plain-JS cpu backend. `auto` takes the first that loads; a forced choice
 * that fails falls down the ladder from there. The two native packages are
 * optional dependencies whose installers download libtensorflow, so they are
 * often absent: that costs one log line, never the node.
 */
import * as tf from '@tensorflow/tfjs'
import type { Logger } from '../../coordinator/components.ts'
import { ConfigError } from '../errors.ts'

export const BACKEND_PREFERENCES = ['auto', 'gpu', 'node', 'wasm', 'cpu'] as const
export type BackendPreference = typeof BACKEND_PREFERENCES[number]
export type BackendName = Exclude<BackendPreference, 'auto'>

export interface BackendInfo {
  /** The rung in use. */
  name: BackendName
  /** tfjs's own name for it: 'tensorflow', 'wasm' or 'cpu'. */
  tfBackend: string
  /** Rungs tried before this one, with why each failed. */
  skipped: Array<{ name: BackendName, reason: string }>
}

const LADDER: readonly BackendName[] = ['gpu', 'node', 'wasm', 'cpu']

// Held in variables so the type checker and bundlers do not need the optional packages.
const NATIVE_PACKAGES: Record<'gpu' | 'node', string> = {
  gpu: '@tensorflow/tfjs-node-gpu',
  node: '@tensorflow/tfjs-node'
}
const WASM_PACKAGE = '@tensorflow/tfjs-backend-wasm'

async function activate (name: BackendName): Promise<string> {
  if (name === 'gpu' || name === 'node') {
    // Both register tfjs's 'tensorflow' backend (the gpu build links CUDA).
    const pkg = NATIVE_PACKAGES[name]
    await import(pkg)
    if (!(await tf.setBackend('tensorflow'))) throw new Error(`${pkg} loaded but its backend did not initialise`)
    return 'tensorflow'
  }
  if (name === 'wasm') {
    await import(WASM_PACKAGE)
    if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend did not initialise')
    return 'wasm'
  }
  if (!(await tf.setBackend('cpu'))) throw new Error('the cpu backend did not initialise')
  return 'cpu'
}

function firstLine (err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err)
  return msg.split('\n')[0]!.slice(0, 200)
}

export function parseBackendPreference (value: string): BackendPreference {
  if ((BACKEND_PREFERENCES as readonly string[]).includes(value)) return value as BackendPreference
  throw new ConfigError(`--backend must be one of ${BACKEND_PREFERENCES.join(', ')}, got '${value}'`)
}

/**
 * Activates a backend and reports which. Safe to call again: a call with the
 * same preference after success is cheap (tf.setBackend of the active one).
 */
export async function selectBackend (preference: BackendPreference, logger: Logger): Promise<BackendInfo> {
  if (!(BACKEND_PREFERENCES as readonly string[]).includes(preference)) parseBackendPreference(String(preference))
  const start = preference === 'auto' ? 0 : LADDER.indexOf(preference)
  const skipped: BackendInfo['skipped'] = []
  for (const name of LADDER.slice(start)) {
    try {
      const tfBackend = await activate(name)
      await tf.ready()
      const info: BackendInfo = { name, tfBackend, skipped }
      if (preference !== 'auto' && name !== preference) {
        logger.warn('backend unavailable, falling back', { wanted: preference, using: name, reason: skipped[0]?.reason })
      } else {
        logger.info('backend selected', { backend: name, preference, ...(skipped.length > 0 ? { skipped: skipped.map(s => `${s.name}: ${s.reason}`) } : {}) })
      }
      return info
    } catch (err) {
      skipped.push({ name, reason: firstLine(err) })
    }
  }
  // The cpu backend is pure JS inside @tensorflow/tfjs; reaching here means tfjs itself is broken.
  throw new ConfigError(`no tfjs backend could be loaded: ${skipped.map(s => `${s.name}: ${s.reason}`).join('; ')}`)
}
