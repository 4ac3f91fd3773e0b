import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadMnist, mnistFiles } from '../node/data/mnist.ts'
import type { LabeledData } from '../node/data/types.ts'

function histogram (y: Int32Array): number[] {
  const h = new Array<number>(10).fill(0)
  for (const v of y) h[v]!++
  return h
}

describe('MNIST from the bundled IDX files', () => {
  let test: LabeledData
  beforeAll(async () => { test = await loadMnist({ split: 'test' }) })

  it('loads the canonical test split: 10,000 x 784 in [0, 1], the known label histogram', () => {
    expect(test.n).toBe(10_000)
    expect(test.dim).toBe(784)
    expect(test.numClasses).toBe(10)
    expect(test.x.length).toBe(10_000 * 784)
    expect(histogram(test.y)).toEqual([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    expect([...test.y.slice(0, 10)]).toEqual([7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
    let min = Infinity
    let max = -Infinity
    let sum = 0
    for (const v of test.x) { min = Math.min(min, v); max = Math.max(max, v); sum += v }
    expect(min).toBe(0)
    expect(max).toBe(1)
    // Canonical test-set pixel mean is 0.1325.
    expect(sum / test.x.length).toBeCloseTo(0.1325, 4)
  })

  it('loads the train split with its known label histogram and reads only `limit` rows', async () => {
    const train = await loadMnist({ split: 'train' })
    expect(train.n).toBe(60_000)
    expect(histogram(train.y)).toEqual([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    const head = await loadMnist({ split: 'train', limit: 5 })
    expect(head.n).toBe(5)
    expect([...head.y]).toEqual([5, 0, 4, 1, 9])
    expect(head.x).toEqual(train.x.subarray(0, 5 * 784))
    // A pixel is byte / 255 exactly (as float32).
    expect(head.x.some(v => v === Math.fround(255 / 255))).toBe(true)
  })

  it('reads only the selected examples, in the order chosen from the labels', async () => {
    const sevens = (y: Int32Array): number[] => [...y.keys()].filter(i => y[i] === 7).reverse()
    const picked = await loadMnist({ split: 'test', limit: 100, select: sevens })
    const want = sevens(test.y.subarray(0, 100))
    expect(picked.n).toBe(want.length)
    expect([...picked.y]).toEqual(want.map(() => 7))
    want.forEach((k, i) => { expect(picked.x.subarray(i * 784, (i + 1) * 784)).toEqual(test.x.subarray(k * 784, (k + 1) * 784)) })
    await expect(loadMnist({ split: 'test', limit: 10, select: () => [10] })).rejects.toMatchObject({ name: 'InvalidArgumentError', message: 'selected example 10 is not among the 10 read' })
  })

  it('refuses a bad split or limit with a named error', async () => {
    await expect(loadMnist({ split: 'valid' as 'test' })).rejects.toMatchObject({ name: 'InvalidArgumentError' })
    await expect(loadMnist({ split: 'test', limit: -1 })).rejects.toMatchObject({ name: 'InvalidArgumentError', message: 'limit must be a non-negative integer, got -1' })
  })
})

describe('MNIST format errors name the file', () => {
  let dir: string
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'fm-mnist-')) })
  afterAll(() => { rmSync(dir, { recursive: true, force: true }) })

  const images = (count: number, opts: { magic?: number, rows?: number, cols?: number, pixels?: number } = {}): Uint8Array => {
    const rows = opts.rows ?? 28
    const cols = opts.cols ?? 28
    const buf = new Uint8Array(16 + (opts.pixels ?? count * rows * cols))
    const v = new DataView(buf.buffer)
    v.setUint32(0, opts.magic ?? 2051)
    v.setUint32(4, count)
    v.setUint32(8, rows)
    v.setUint32(12, cols)
    for (let i = 16; i < buf.length; i++) buf[i] = i % 256
    return buf
  }
  const labels = (values: number[], magic = 2049, count = values.length): Uint8Array => {
    const buf = new Uint8Array(8 + values.length)
    const v = new DataView(buf.buffer)
    v.setUint32(0, magic)
    v.setUint32(4, count)
    buf.set(values, 8)
    return buf
  }
  it('reads a well-formed small pair (the helpers themselves are right)', async () => {
    const d = join(dir, 'ok')
    mkdirSync(d)
    const files = mnistFiles('test', d)
    writeFileSync(files.images, images(3))
    writeFileSync(files.labels, labels([3, 1, 4]))
    const data = await loadMnist({ split: 'test', dir: d })
    expect(data.n).toBe(3)
    expect([...data.y]).toEqual([3, 1, 4])
    expect(data.x[0]).toBe(Math.fround(16 / 255))
  })

  const cases: Array<[string, () => [Uint8Array, Uint8Array], 'images' | 'labels', string]> = [
    ['bad image magic', () => [images(3, { magic: 2049 }), labels([1, 2, 3])], 'images', 'bad magic number 2049, expected 2051 for an IDX images file'],
    ['bad label magic', () => [images(3), labels([1, 2, 3], 2051)], 'labels', 'bad magic number 2051, expected 2049 for an IDX labels file'],
    ['truncated images', () => [images(3, { pixels: 3 * 784 - 10 }), labels([1, 2, 3])], 'images', 'truncated: 2358 bytes, the header promises 3 items (2368 bytes)'],
    ['header cut short', () => [images(3).subarray(0, 10), labels([1, 2, 3])], 'images', 'truncated: 10 bytes, an IDX images header needs 16'],
    ['trailing bytes', () => [images(3, { pixels: 3 * 784 + 4 }), labels([1, 2, 3])], 'images', '4 trailing bytes after the 3 items the header declares'],
    ['label count lies', () => [images(3), labels([1, 2], 2049, 3)], 'labels', 'truncated: 10 bytes, the header promises 3 items (11 bytes)'],
    ['counts disagree', () => [images(3), labels([1, 2])], 'labels', 'holds 2 labels but'],
    ['label not a digit', () => [images(3), labels([1, 12, 3])], 'labels', 'label 12 of item 1 (byte 9) is not a digit 0-9'],
    ['absurd image size', () => [images(0, { rows: 100000 }), labels([])], 'images', 'implausible image size 100000x28']
  ]
  for (const [title, make, which, message] of cases) {
    it(`${title} -> MnistFormatError naming the ${which} file`, async () => {
        const d = join(dir, title.replace(/\W+/g, '-'))
      mkdirSync(d)
      const files = mnistFiles('test', d)
      const [img, lbl] = make()
      writeFileSync(files.images, img)
      writeFileSync(files.labels, lbl)
      const err = await loadMnist({ split: 'test', dir: d }).then(() => undefined, (e: unknown) => e as Error & { file: string })
      expect(err).toMatchObject({ name: 'MnistFormatError', file: files[which] })
      expect(err!.message.startsWith(`${files[which]}: `)).toBe(true)
      expect(err!.message).toContain(message)
    })
  }

  it('a missing file is a DataFileNotFoundError naming it', async () => {
    const d = join(dir, 'nothing-here')
    await expect(loadMnist({ split: 'train', dir: d })).rejects.toMatchObject({
      name: 'DataFileNotFoundError',
      message: `${join(d, 'train-images-idx3-ubyte')}: no such file`
    })
  })
})
