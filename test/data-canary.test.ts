import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { createSeededRandom } from '../coordinator/components.ts'
import { createBatchSource } from '../node/data/batches.ts'
import { loadTable } from '../node/data/load.ts'
import { loadMnist } from '../node/data/mnist.ts'
import { parseDatasetSchema } from '../node/data/schema.ts'
import { attachFeatures, describeOccurrences, findCanaries, makeVectorCanaries, plantCanaries, plantTableCanaries } from './support/canary.ts'

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/data/${name}`, import.meta.url))

function randomBuffers (count: number, bytes: number, seed: number): Uint8Array[] {
  const rng = createSeededRandom(seed)
  return Array.from({ length: count }, () => {
    const b = new Uint8Array(bytes)
    for (let i = 0; i < bytes; i += 4) {
      const v = Math.floor(rng.next() * 2 ** 32)
      b[i] = v & 255; b[i + 1] = (v >>> 8) & 255; b[i + 2] = (v >>> 16) & 255; b[i + 3] = v >>> 24
    }
    return b
  })
}

function float32Bytes (values: ArrayLike<number>): Uint8Array {
  const b = Buffer.alloc(values.length * 4)
  for (let i = 0; i < values.length; i++) b.writeFloatLE(values[i]!, i * 4)
  return new Uint8Array(b)
}

describe('canary search', () => {
  const canaries = makeVectorCanaries(3, 784, 'site-a', 1)

  it('makes unique, off-grid canaries', () => {
    expect(new Set(canaries.map(c => c.id)).size).toBe(3)
    expect(canaries[0]!.id).toMatch(/^CANARY-site-a-0-[0-9a-f]{12}$/)
    for (const v of canaries[0]!.features!) expect(Number.isInteger(Math.round(v * 255 * 1e4) / 1e4)).toBe(false)
  })

  it('finds nothing in clean random buffers, in clean logs, or in real MNIST pixels', async () => {
    const clean = randomBuffers(8, 256 * 1024, 7)
    expect(findCanaries(clean, canaries)).toEqual([])
    expect(findCanaries({ log: '{"level":"info","event":"round:committed","round":3,"loss":0.4121}\n' }, canaries)).toEqual([])
    const mnist = await loadMnist({ split: 'test', limit: 2000 })
    expect(findCanaries([new Uint8Array(mnist.x.buffer)], canaries)).toEqual([])
  })

  it('finds a canary deliberately embedded: raw text (UTF-8, UTF-16LE), float32 record at an unaligned offset, base64, partial windows', () => {
    const [a, b, c] = canaries
    const bufs = randomBuffers(4, 64 * 1024, 11)
    bufs[0]!.set(Buffer.from(`id=${a!.id};`, 'utf8'), 77)
    bufs[1]!.set(Buffer.from(a!.id, 'utf16le'), 333)
    bufs[2]!.set(float32Bytes(b!.features!), 1001)
    // 40 values from the middle of c's record: a partial leak.
    bufs[3]!.set(float32Bytes(c!.features!.subarray(100, 140)), 4099)
    const log = `{"event":"frame","payload":"${Buffer.from(float32Bytes(b!.features!)).toString('base64')}"}`
    const found = findCanaries([...bufs, log], canaries)
    expect(found.filter(o => o.encoding !== 'float32-window')).toEqual([
      { canary: a!.id, haystack: 0, offset: 80, encoding: 'utf8' },
      { canary: a!.id, haystack: 1, offset: 333, encoding: 'utf16le' },
      { canary: b!.id, haystack: 2, offset: 1001, encoding: 'float32-record' },
      { canary: b!.id, haystack: 4, offset: 28, encoding: 'float32-record-base64' }
    ])
    // Windows of 8 values at stride 8: values 104..111, ..., 128..135 lie inside 100..139.
    const windows = found.filter(o => o.encoding === 'float32-window')
    expect(windows.map(o => [o.canary, o.haystack, o.offset])).toEqual([104, 112, 120, 128].map(v => [c!.id, 3, 4099 + (v - 100) * 4]))
    expect(describeOccurrences(found).split('\n')[0]).toBe(`${a!.id} in haystack 0 at 80 as utf8`)
  })

  it('finds a distinctive single value as float32 at an odd offset, and can be told not to look', () => {
    const single = [{ id: 'CANARY-x-0-0123456789ab', site: 'x', texts: [], values: [7331.0421] }]
    const [buf] = randomBuffers(1, 4096, 13)
    buf!.set(float32Bytes([7331.0421]), 2047)
    expect(findCanaries([buf!], single)).toEqual([{ canary: 'CANARY-x-0-0123456789ab', haystack: 0, offset: 2047, encoding: 'float32-value' }])
    expect(findCanaries([buf!], single, { values: false })).toEqual([])
  })

  it('finds a canary planted in a dataset once a batch carrying it is handed out (the search can fail the leak test)', () => {
    const data = { x: new Float32Array(50 * 784).fill(0.25), y: new Int32Array(50), n: 50, dim: 784, numClasses: 10 }
    const planted = plantCanaries(data, canaries, 3)
    const rows = canaries.map(c => c.row!)
    expect(new Set(rows).size).toBe(3)
    expect(planted.x.subarray(rows[0]! * 784, rows[0]! * 784 + 784)).toEqual(canaries[0]!.features)
    expect(data.x[rows[0]! * 784]).toBe(0.25)
    const batch = createBatchSource(planted, { seed: 1 }).next(50)
    const found = findCanaries([new Uint8Array(batch.x.buffer)], canaries)
    expect(found.filter(o => o.encoding === 'float32-record').map(o => o.canary).sort()).toEqual(canaries.map(c => c.id).sort())
    for (const o of found) expect(o.offset % (784 * 4)).toBe(0)
  })
})

describe('table canaries', () => {
  const schema = parseDatasetSchema(JSON.parse(readFileSync(fixture('patients.schema.json'), 'utf8')))

  it('plants unique rows that load through the gate, and finds their encoded feature vector and raw values', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fm-canary-'))
    try {
      const { text, canaries } = plantTableCanaries(readFileSync(fixture('patients.csv'), 'utf8'), 'csv', schema, { count: 2, site: 'north', seed: 5 })
      expect(canaries.map(c => c.line)).toEqual([9, 10])
      const file = join(dir, 'site.csv')
      writeFileSync(file, text)
      // income (a non-integer numeric) is trained on here, which makes each record's vector unique.
      const t = await loadTable(file, schema)
      expect(t.data.n).toBe(8)
      expect(t.featureNames).toEqual(['age', 'income', 'smoker=no', 'smoker=yes'])
      attachFeatures(canaries, t)
      expect(canaries.map(c => c.row)).toEqual([6, 7])
      expect(canaries[0]!.texts).toEqual([canaries[0]!.id, `${canaries[0]!.id}-id`, String(canaries[0]!.values[0]), String(canaries[0]!.values[1]), `${canaries[0]!.id}-email`, `${canaries[0]!.id}-notes`])
      // The trainer's rows carry the record; the raw file carries the raw values.
      const inData = findCanaries([new Uint8Array(t.data.x.buffer)], canaries)
      expect(inData.filter(o => o.encoding === 'float32-record').map(o => [o.canary, o.offset])).toEqual(canaries.map(c => [c.id, c.row! * t.data.dim * 4]))
      const inFile = findCanaries({ file: text }, canaries)
      expect(new Set(inFile.map(o => o.canary))).toEqual(new Set(canaries.map(c => c.id)))
      // JSONL works the same way.
      const jsonl = plantTableCanaries('', 'jsonl', schema, { count: 1, site: 'east', seed: 5 })
      writeFileSync(join(dir, 'site.jsonl'), jsonl.text)
      const tj = await loadTable(join(dir, 'site.jsonl'), schema)
      expect(tj.groups).toEqual(['east'])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
