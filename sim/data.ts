/**
 * The simulator's data: the topology's dataset, split into the sites' shares
 * by the topology's partitioner, plus the held-out test set every method is
 * scored on. In a real federation each site loads only its own file. Inline,
 * one process plays every site, so it loads once and hands each simulated
 * site only its own rows; a site in a child process of its own reads only
 * its own rows (loadSiteShare): the labels fix the partition, then the
 * images of its share are read row by row, so its memory holds no one
 * else's data.
 */
import { createSeededRandom } from '../coordinator/components.ts'
import { partitionByAttribute, partitionByLabelGroups, partitionDirichlet, partitionIid, partitionShards, type Partition } from '../coordinator/partition.ts'
import { open, type FileHandle } from 'node:fs/promises'
import { subset } from '../node/data/batches.ts'
import { loadMnist, mnistFiles } from '../node/data/mnist.ts'
import { MnistFormatError } from '../node/errors.ts'
import type { LabeledData } from '../node/data/types.ts'
import { TopologyError } from './errors.ts'
import type { Topology } from './topology.ts'

export interface SimData {
  train: LabeledData
  /** Each site's own rows, in topology order. */
  sites: LabeledData[]
  test: LabeledData
  partition: Partition
}

export async function loadSimData (topology: Topology, options: { signal?: AbortSignal } = {}): Promise<SimData> {
  const { data } = topology
  if (data.source.kind !== 'mnist') throw new TopologyError(`data.source kind '${data.source.kind}' is not supported by the simulator yet: use 'mnist'`)
  const signal = options.signal !== undefined ? { signal: options.signal } : {}
  const train = await loadMnist({ split: 'train', ...(data.trainLimit !== undefined ? { limit: data.trainLimit } : {}), ...signal })
  const test = await loadMnist({ split: 'test', ...(data.testLimit !== undefined ? { limit: data.testLimit } : {}), ...signal })
  const partition = partitionFor(topology, train)
  return { train, sites: partition.indices.map(ix => subset(train, ix)), test, partition }
}

export function partitionFor (topology: Topology, train: LabeledData): Partition {
  const n = topology.sites.length
  const rng = createSeededRandom(topology.seed).fork('partition')
  const p = topology.data.partition
  switch (p.kind) {
    case 'iid': return partitionIid(train.n, n, rng, train.y)
    case 'dirichlet': return partitionDirichlet(train.y, n, p.alpha, rng)
    case 'shards': return partitionShards(train.y, n, p.shardsPerSite, rng)
    case 'labels': return partitionByLabelGroups(train.y, topology.sites.map(s => s.labels ?? []))
    case 'attribute': return partitionByAttribute(Array.from(train.y, String), train.y)
    default: {
      const never: never = p
      throw new TopologyError(`unknown partition ${JSON.stringify(never)}`)
    }
  }
}

/** MNIST's digits and its images' side; the files' headers must agree. */
const MNIST_CLASSES = 10
const MNIST_DIM = 28 * 28

/**
 * One site's share of the training data, exactly the rows loadSimData gives
 * it (same partition, same order, same float32 values), without holding the
 * other sites' rows or the test set: what a site's child process loads.
 */
export async function loadSiteShare (topology: Topology, index: number): Promise<LabeledData> {
  if (topology.data.source.kind !== 'mnist') throw new TopologyError(`data.source kind '${topology.data.source.kind}' is not supported by the simulator yet: use 'mnist'`)
  const paths = mnistFiles('train')
  const lbl = await open(paths.labels, 'r')
  let y: Int32Array
  try {
    const count = await idxCount(lbl, paths.labels, 2049, 8, 1)
    const n = Math.min(count, topology.data.trainLimit ?? count)
    const bytes = await readAt(lbl, paths.labels, 8, n)
    y = Int32Array.from(bytes)
    if (y.some(v => v >= MNIST_CLASSES)) throw new MnistFormatError('a label is not a digit 0-9', paths.labels)
  } finally {
    await lbl.close()
  }
  // The partition needs the labels only.
  const own = partitionFor(topology, { x: new Float32Array(0), y, n: y.length, dim: MNIST_DIM, numClasses: MNIST_CLASSES }).indices[index]
  if (own === undefined) throw new TopologyError(`no site at index ${index}`)
  const img = await open(paths.images, 'r')
  try {
    const count = await idxCount(img, paths.images, 2051, 16, MNIST_DIM)
    if (count < y.length) throw new MnistFormatError(`holds ${count} images, fewer than the ${y.length} labels read`, paths.images)
    const x = new Float32Array(own.length * MNIST_DIM)
    const labels = new Int32Array(own.length)
    for (let i = 0; i < own.length; i++) {
      const k = own[i]!
      const row = await readAt(img, paths.images, 16 + k * MNIST_DIM, MNIST_DIM)
      // As loadMnist: byte / 255 rounded to float32.
      for (let j = 0; j < MNIST_DIM; j++) x[i * MNIST_DIM + j] = row[j]! / 255
      labels[i] = y[k]!
    }
    return { x, y: labels, n: own.length, dim: MNIST_DIM, numClasses: MNIST_CLASSES }
  } finally {
    await img.close()
  }
}

/** An IDX file's item count, after checking its magic, item size and length against the file's size. */
async function idxCount (fh: FileHandle, path: string, magic: number, header: number, itemBytes: number): Promise<number> {
  const size = (await fh.stat()).size
  if (size < header) throw new MnistFormatError(`truncated: ${size} bytes, an IDX header needs ${header}`, path)
  const head = new DataView((await readAt(fh, path, 0, header)).buffer)
  if (head.getUint32(0, false) !== magic) throw new MnistFormatError(`bad magic number ${head.getUint32(0, false)}, expected ${magic}`, path)
  const count = head.getUint32(4, false)
  if (header === 16 && head.getUint32(8, false) * head.getUint32(12, false) !== itemBytes) throw new MnistFormatError(`images are not ${itemBytes} pixels`, path)
  if (size !== header + count * itemBytes) throw new MnistFormatError(`${size} bytes, the header promises ${count} items (${header + count * itemBytes} bytes)`, path)
  return count
}

async function readAt (fh: FileHandle, path: string, position: number, length: number): Promise<Uint8Array> {
  const buf = new Uint8Array(length)
  let done = 0
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done)
    if (bytesRead === 0) throw new MnistFormatError(`truncated at offset ${position + done}`, path)
    done += bytesRead
  }
  return buf
}
