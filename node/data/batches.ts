/**
 * Batches for the trainer: the only thing node/data hands out. A source walks
 * its examples in a seeded shuffled order and reshuffles at every epoch, so a
 * run is replayable from its seed. A batch that crosses an epoch boundary is
 * filled from the next epoch: every batch has exactly the size asked for.
 */
import { createSeededRandom, type Random } from '../../coordinator/components.ts'
import { InvalidArgumentError } from '../../coordinator/errors.ts'
import type { Batch, BatchSource, LabeledData } from './types.ts'

export interface BatchSourceOptions {
  seed: number | string
  /** Restrict the source to these rows of `data` (e.g. a site's partition). */
  indices?: ArrayLike<number>
}

export interface SeededBatchSource extends BatchSource {
  /** Completed passes over the data so far. */
  readonly epoch: number
}

function checkIndices (data: LabeledData, indices: ArrayLike<number>): void {
  for (let i = 0; i < indices.length; i++) {
    const k = indices[i]!
    if (!Number.isInteger(k) || k < 0 || k >= data.n) throw new InvalidArgumentError(`index ${k} at position ${i} is outside the data (n = ${data.n})`)
  }
}

/** The rows `indices` of `data`, copied, in the given order. */
export function subset (data: LabeledData, indices: ArrayLike<number>): LabeledData {
  checkIndices(data, indices)
  const { dim } = data
  const n = indices.length
  const x = new Float32Array(n * dim)
  const y = new Int32Array(n)
  for (let i = 0; i < n; i++) {
    const k = indices[i]!
    x.set(data.x.subarray(k * dim, (k + 1) * dim), i * dim)
    y[i] = data.y[k]!
  }
  return { x, y, n, dim, numClasses: data.numClasses }
}

function shuffleInPlace (a: Int32Array, rng: Random): void {
  // Fisher-Yates.
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(i + 1)
    const t = a[i]!
    a[i] = a[j]!
    a[j] = t
  }
}

export function createBatchSource (data: LabeledData, options: BatchSourceOptions): SeededBatchSource {
  const rows = options.indices === undefined ? Int32Array.from({ length: data.n }, (_, i) => i) : Int32Array.from(options.indices)
  if (options.indices !== undefined) checkIndices(data, rows)
  if (rows.length === 0) throw new InvalidArgumentError('a batch source needs at least one example')
  const rng = createSeededRandom(options.seed).fork('batches')
  const order = rows.slice()
  shuffleInPlace(order, rng)
  let pos = 0
  let epoch = 0
  const { dim } = data

  return {
    dim,
    numClasses: data.numClasses,
    size: rows.length,
    get epoch () { return epoch },
    next: (batchSize: number): Batch => {
      if (!Number.isInteger(batchSize) || batchSize <= 0) throw new InvalidArgumentError(`batch size must be a positive integer, got ${batchSize}`)
      const x = new Float32Array(batchSize * dim)
      const y = new Int32Array(batchSize)
      for (let i = 0; i < batchSize; i++) {
        if (pos === order.length) {
          order.set(rows)
          shuffleInPlace(order, rng)
          pos = 0
          epoch++
        }
        const k = order[pos++]!
        x.set(data.x.subarray(k * dim, (k + 1) * dim), i * dim)
        y[i] = data.y[k]!
      }
      return { x, y, size: batchSize }
    }
  }
}
