/**
 * One size of bench/sim-scale.ts, in a process of its own so that its peak
 * RSS is its own: argv[2] is a ScaleSpec as JSON; the last stdout line is
 * the run's ScaleFigures as JSON.
 */
import '../node/runtime.ts'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLogger } from '../node/components.ts'
import { selectBackend } from '../node/model/backend.ts'
import { loadSimData } from '../sim/data.ts'
import { runNetworkedMoe } from '../sim/moe-method.ts'
import { peakRssBytes } from '../sim/run.ts'
import { createFrameCensus, scaleFigures, scaleTopology, type ScaleSpec } from '../sim/scale.ts'

const spec = JSON.parse(process.argv[2] ?? '{}') as ScaleSpec
const logger = createLogger('forgemesh:sim', { level: 'warn' })
const topology = scaleTopology(spec)
await selectBackend('auto', logger)
const data = await loadSimData(topology)
const dir = await mkdtemp(join(tmpdir(), `forgemesh-scale-${spec.sites}-`))
try {
  const census = spec.census === true ? createFrameCensus() : undefined
  const moe = await runNetworkedMoe(topology, data, { dir, evalRounds: new Set([spec.rounds]), ...(census !== undefined ? { wireTap: census.tap } : {}) }, { logger })
  const figures = scaleFigures(spec.sites, moe, peakRssBytes())
  if (census !== undefined) figures.frames = census.counts()
  process.stdout.write(JSON.stringify(figures) + '\n')
} finally {
  await rm(dir, { recursive: true, force: true })
}
