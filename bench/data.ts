/**
 * Site data costs, each against a baseline measured in the same run:
 *   - loadMnist (train, 60,000 x 784, header checks + bytes -> float32 [0,1])
 *     against a bare readFile of the same two files;
 *   - a CSV table through loadTable (parse, gate detectors, validate, encode)
 *     against a bare readFile + split of the same file;
 *   - the partitioners on the 60,000 training labels against one seeded
 *     shuffle of 60,000 indices.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSeededRandom } from '../coordinator/components.ts'
import { partitionDirichlet, partitionIid, partitionShards } from '../coordinator/partition.ts'
import { loadTable } from '../node/data/load.ts'
import { loadMnist, mnistFiles } from '../node/data/mnist.ts'
import type { BenchContext, Figures } from './run.ts'

async function best (reps: number, fn: () => Promise<unknown> | unknown): Promise<number> {
  let min = Infinity
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint()
    await fn()
    min = Math.min(min, Number(process.hrtime.bigint() - t0) / 1e6)
  }
  return min
}

function round (x: number): number { return Math.round(x * 1000) / 1000 }

export default async function bench (ctx: BenchContext): Promise<Figures> {
  const files = mnistFiles('train')
  const rawMs = await best(3, async () => Promise.all([readFile(files.images), readFile(files.labels)]))
  const mnistMs = await best(3, async () => loadMnist({ split: 'train' }))
  ctx.print(`MNIST train: readFile ${rawMs.toFixed(1)} ms, loadMnist ${mnistMs.toFixed(1)} ms`)

  const dir = mkdtempSync(join(tmpdir(), 'fm-bench-data-'))
  const rows = 100_000
  const rng = createSeededRandom(1)
  const lines = ['region,age,income,smoker,notes,outcome']
  for (let i = 0; i < rows; i++) {
    lines.push(`${['north', 'south', 'east'][rng.int(3)]},${18 + rng.int(80)},${(20000 + 80000 * rng.next()).toFixed(2)},${rng.int(2) === 0 ? 'no' : 'yes'},"visit ${i}, nothing to report",${rng.int(2) === 0 ? 'healthy' : 'sick'}`)
  }
  const file = join(dir, 'table.csv')
  writeFileSync(file, lines.join('\n') + '\n')
  const schema = {
    columns: [
      { name: 'region', kind: 'site' as const },
      { name: 'age', kind: 'numeric' as const, bounds: { min: 0, max: 120 }, integer: true },
      { name: 'income', kind: 'numeric' as const },
      { name: 'smoker', kind: 'categorical' as const, categories: ['no', 'yes'] },
      { name: 'notes', kind: 'text' as const },
      { name: 'outcome', kind: 'label' as const, categories: ['healthy', 'sick'] }
    ]
  }
  const splitMs = await best(3, async () => (await readFile(file, 'utf8')).split('\n').map(l => l.split(',')))
  const tableMs = await best(3, async () => loadTable(file, schema))
  rmSync(dir, { recursive: true, force: true })
  ctx.print(`CSV ${rows} rows: readFile+split ${splitMs.toFixed(1)} ms, loadTable ${tableMs.toFixed(1)} ms`)

  const { y } = await loadMnist({ split: 'train' })
  const shuffleMs = await best(5, () => {
    const a = Int32Array.from({ length: y.length }, (_, i) => i)
    const r = createSeededRandom(2)
    for (let i = a.length - 1; i > 0; i--) { const j = r.int(i + 1); const t = a[i]!; a[i] = a[j]!; a[j] = t }
  })
  const iidMs = await best(5, () => partitionIid(y.length, 100, createSeededRandom(2), y))
  const dirMs = await best(5, () => partitionDirichlet(y, 100, 0.5, createSeededRandom(2)))
  const shardMs = await best(5, () => partitionShards(y, 100, 2, createSeededRandom(2)))
  ctx.print(`partition 60,000 labels / 100 sites: shuffle ${shuffleMs.toFixed(2)} ms, IID ${iidMs.toFixed(2)} ms, Dirichlet ${dirMs.toFixed(2)} ms, shards ${shardMs.toFixed(2)} ms`)

  return {
    mnist_readfile_ms: round(rawMs),
    mnist_load_ms: round(mnistMs),
    mnist_load_vs_readfile: round(mnistMs / rawMs),
    csv_rows: rows,
    csv_split_ms: round(splitMs),
    csv_load_table_ms: round(tableMs),
    csv_load_vs_split: round(tableMs / splitMs),
    partition_shuffle_ms: round(shuffleMs),
    partition_iid_vs_shuffle: round(iidMs / shuffleMs),
    partition_dirichlet_vs_shuffle: round(dirMs / shuffleMs),
    partition_shards_vs_shuffle: round(shardMs / shuffleMs)
  }
}
