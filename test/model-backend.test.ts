import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import { createLogger, type LogRecord } from '../node/components.ts'
import { parseBackendPreference, selectBackend } from '../node/model/backend.ts'

function capture (): { logger: ReturnType<typeof createLogger>, records: LogRecord[] } {
  const records: LogRecord[] = []
  return { logger: createLogger('forgemesh:model', { level: 'debug', format: 'json', sink: (_l, r) => { records.push(r) } }), records }
}

async function importable (name: string): Promise<boolean> {
  try { await import(name); return true } catch { return false }
}

describe('backend ladder', () => {
  it('auto takes the first rung that loads and says so in one log line', async () => {
    const gpu = await importable(['@tensorflow', 'tfjs-node-gpu'].join('/'))
    const node = await importable(['@tensorflow', 'tfjs-node'].join('/'))
    const want = gpu ? 'gpu' : node ? 'node' : 'wasm'
    const { logger, records } = capture()
    const info = await selectBackend('auto', logger)
    expect(info.name).toBe(want)
    expect(tf.getBackend()).toBe(want === 'wasm' ? 'wasm' : 'tensorflow')
    expect(records).toHaveLength(1)
    expect(records[0]).toMatchObject({ level: 'info', event: 'backend selected', backend: want, preference: 'auto' })
    if (want === 'wasm') {
      expect(info.skipped.map(s => s.name)).toEqual(['gpu', 'node'])
      expect(records[0]!.skipped).toEqual([expect.stringMatching(/^gpu: .*tfjs-node-gpu/), expect.stringMatching(/^node: .*tfjs-node/)])
    }
  })

  it('a forced optional backend that fails falls back with one warning instead of stopping the node', async () => {
    if (await importable(['@tensorflow', 'tfjs-node-gpu'].join('/'))) return // a machine with CUDA tfjs: nothing to fall back from
    const { logger, records } = capture()
    const info = await selectBackend('gpu', logger)
    expect(info.name).not.toBe('gpu')
    expect(info.skipped[0]).toMatchObject({ name: 'gpu', reason: expect.stringContaining('tfjs-node-gpu') })
    expect(records).toHaveLength(1)
    expect(records[0]).toMatchObject({ level: 'warn', event: 'backend unavailable, falling back', wanted: 'gpu', using: info.name })
  })

  it('forces cpu and wasm, and runs the same numbers on both', async () => {
    const { logger } = capture()
    const results: number[][] = []
    for (const pref of ['cpu', 'wasm'] as const) {
      const info = await selectBackend(pref, logger)
      expect(info).toEqual({ name: pref, tfBackend: pref, skipped: [] })
      expect(tf.getBackend()).toBe(pref)
      results.push(Array.from(tf.tidy(() => tf.matMul(tf.tensor2d([1, 2, 3, 4], [2, 2]), tf.tensor2d([5, 6, 7, 8], [2, 2])).dataSync())))
    }
    expect(results).toEqual([[19, 22, 43, 50], [19, 22, 43, 50]])
  })

  it('refuses an unknown preference with a named error', async () => {
    expect(() => parseBackendPreference('tpu')).toThrowError(expect.objectContaining({ name: 'ConfigError', message: "--backend must be one of auto, gpu, node, wasm, cpu, got 'tpu'" }))
    await expect(selectBackend('tpu' as 'cpu', capture().logger)).rejects.toMatchObject({ name: 'ConfigError' })
  })
})
