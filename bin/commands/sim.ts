/**
 * `forgemesh sim [topology.json]`: runs a federation topology on this
 * machine — real sites on a shaped mesh, the baselines beside them — and
 * writes report.json and report.html. Without a topology it runs the bundled
 * default, sim/topologies/three-sites.json (what `npm start` does).
 */
import { fileURLToPath } from 'node:url'
import { createLogger, isLogLevel } from '../../node/components.ts'
import { createProgress } from '../../sim/progress.ts'
import { rssLine, runSimulation, summaryTable } from '../../sim/run.ts'
import { executionOf, loadTopology } from '../../sim/topology.ts'
import { UsageError, helpText, parseArgs, type FlagSpec } from '../usage.ts'

const FLAGS: FlagSpec = {
  out: { type: 'string', help: 'folder for report.json and report.html (default out/<topology name>)' },
  seed: { type: 'number', help: 'override the topology\'s seed' },
  rounds: { type: 'number', help: 'override the number of rounds' },
  'log-level': { type: 'string', help: 'debug | info | warn | error (default warn)' },
  json: { type: 'boolean', help: 'print the summary as one JSON object' },
  help: { type: 'boolean', help: 'this text' }
}

export const DEFAULT_TOPOLOGY = fileURLToPath(new URL('../../sim/topologies/three-sites.json', import.meta.url))

export async function run (argv: string[]): Promise<number> {
  const { flags, positionals } = parseArgs(argv, FLAGS)
  if (flags.help === true) {
    process.stdout.write(helpText('forgemesh sim [topology.json] [--out DIR] [--seed N] [--json]', 'Runs a federation on this machine: every site a real node on a shaped network, with local-only, dense FedAvg and centralized baselines beside it. Default topology: sim/topologies/three-sites.json.', FLAGS) + '\n')
    return 0
  }
  if (positionals.length > 1) throw new UsageError(`one topology file at most, got ${positionals.length}`)
  const level = (flags['log-level'] as string | undefined) ?? 'warn'
  if (!isLogLevel(level)) throw new UsageError(`--log-level: expected debug, info, warn or error, got '${level}'`)
  const topology = await loadTopology(positionals[0] ?? DEFAULT_TOPOLOGY)
  if (flags.seed !== undefined) {
    const seed = flags.seed as number
    if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) throw new UsageError(`--seed: expected an integer 0..2^32-1, got ${seed}`)
    topology.seed = seed
  }
  if (flags.rounds !== undefined) {
    const rounds = flags.rounds as number
    if (!Number.isInteger(rounds) || rounds < 1) throw new UsageError(`--rounds: expected a positive integer, got ${rounds}`)
    topology.federation.rounds = rounds
  }
  const json = flags.json === true
  const outDir = (flags.out as string | undefined) ?? `out/${topology.name}`
  const logger = createLogger('forgemesh:sim', { level })
  const progress = json ? undefined : createProgress({}, { stream: process.stderr })
  if (!json) process.stderr.write(`forgemesh sim: ${topology.name} — ${topology.sites.length} sites, ${topology.federation.rounds} rounds, ${executionOf(topology) === 'process' ? 'one process per site' : 'every site in this process'} (baselines run beside it on a worker thread)\n`)
  // The sites' own processes log at the same level as the simulator.
  const levels = (['debug', 'info', 'warn', 'error'] as const).filter((_, i, all) => i >= all.indexOf(level))
  const outcome = await runSimulation(topology, { outDir, siteLogLevels: [...levels], ...(progress !== undefined ? { progress } : {}) }, { logger })
  if (json) {
    process.stdout.write(JSON.stringify({ ok: true, topology: topology.name, report: outcome.reportPath, html: outcome.htmlPath, summary: outcome.report.summary.methods, assembledAt: outcome.assembled.site }) + '\n')
  } else {
    process.stdout.write(`\n${summaryTable(outcome.report)}\n\nThe MoE was assembled at ${outcome.assembled.site} from ${outcome.assembled.experts} verified expert artifacts.\n${rssLine(outcome.report)}\nreport: ${outcome.reportPath}\n        ${outcome.htmlPath}\n`)
  }
  return 0
}
