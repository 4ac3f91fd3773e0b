/**
 * `forgemesh data check|synth`: the suitability gate's decisions for a table,
 * and DP synthetic data for it. Thin: node/data/gate.ts and
 * node/data/synthetic/flow.ts do the work.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { basename } from 'node:path'
import { createLogger, systemClock } from '../../node/components.ts'
import { formatGateReport, runGate, storeGateReport } from '../../node/data/gate.ts'
import { datasetName, runSynthesis } from '../../node/data/synthetic/flow.ts'
import { readSchemaFile } from '../../node/data/synthetic/schema-file.ts'
import { readRawTable } from '../../node/data/table.ts'
import { DatasetSchemaError, SyntheticSchemaError } from '../../node/errors.ts'
import { createPrivacyLedger, readLedgerBudget, type PrivacyLedger } from '../../node/privacy/ledger.ts'
import { openSiteStore, type SiteStore } from '../../node/store.ts'
import { UsageError, formatError, helpText, parseArgs, type FlagSpec, type Parsed } from '../usage.ts'

const DEFAULT_SITE = '.forgemesh/site'
// A site that never set a budget gets this one when its ledger is created.
const DEFAULT_BUDGET = { epsilonBudget: 10, delta: 1e-5 }

const CHECK_FLAGS: FlagSpec = {
  schema: { type: 'string', help: 'the dataset schema with the site policy (JSON): { "columns": [...], "policy": {...} }' },
  site: { type: 'string', help: 'also store the decision report in this site store (a LevelDB folder)' },
  json: { type: 'boolean', help: 'print the report as JSON' },
  help: { type: 'boolean', help: 'this text' }
}

const SYNTH_FLAGS: FlagSpec = {
  schema: { type: 'string', help: 'the dataset schema with the site policy (JSON)' },
  epsilon: { type: 'number', help: 'the run\'s epsilon, charged to the site\'s privacy ledger' },
  delta: { type: 'number', help: 'the run\'s delta, charged to the site\'s privacy ledger' },
  rows: { type: 'number', help: 'number of synthetic rows to write' },
  out: { type: 'string', help: 'the synthetic CSV to write' },
  report: { type: 'string', help: 'also write the quality report here (JSON)' },
  seed: { type: 'string', help: 'seed of every random draw (default 0): same seed, same file' },
  bins: { type: 'number', help: 'equal-width bins per numeric column, between the schema bounds (default 8)' },
  holdout: { type: 'number', help: 'share of real rows held out for ML efficacy, never seen by the generator (default 0.2)' },
  site: { type: 'string', help: `the site store holding the privacy ledger (default ${DEFAULT_SITE})` },
  'budget-epsilon': { type: 'number', help: 'the site\'s total epsilon budget, fixed when its ledger is created (default: the existing ledger\'s, else 10)' },
  'budget-delta': { type: 'number', help: 'the site\'s total delta budget, fixed when its ledger is created (default: the existing ledger\'s, else 1e-5)' },
  json: { type: 'boolean', help: 'print the result as one JSON object' },
  help: { type: 'boolean', help: 'this text' }
}

const USAGE = [
  'usage: forgemesh data <check|synth> <file> --schema <schema.json> [options]',
  '',
  '  check   print the suitability gate\'s decision for every column',
  '  synth   write differentially private synthetic rows and a quality report',
  '',
  'Run \'forgemesh data <check|synth> --help\' for the options.'
].join('\n')

export async function run (argv: string[]): Promise<number> {
  const [sub, ...rest] = argv
  if (sub === undefined || sub === '--help' || sub === '-h') {
    process.stdout.write(USAGE + '\n')
    return sub === undefined ? 2 : 0
  }
  if (sub !== 'check' && sub !== 'synth') throw new UsageError(`unknown data command '${sub}' (check or synth)`)
  try {
    return sub === 'check' ? await check(rest) : await synth(rest)
  } catch (err) {
    // A bad schema file is bad config: exit 2, keeping the error's own name.
    if (!(err instanceof DatasetSchemaError || err instanceof SyntheticSchemaError)) throw err
    if (argv.includes('--json')) process.stdout.write(JSON.stringify({ ok: false, error: formatError(err) }) + '\n')
    else process.stderr.write(`forgemesh: ${formatError(err).message}\n`)
    return 2
  }
}

function one (parsed: Parsed, usage: string): string {
  if (parsed.positionals.length !== 1) throw new UsageError(`expected exactly one data file, got ${parsed.positionals.length}. ${usage}`)
  return parsed.positionals[0]!
}

function need<T extends string | number> (parsed: Parsed, flag: string, type: 'string' | 'number'): T {
  const v = parsed.flags[flag]
  if (v === undefined) throw new UsageError(`--${flag} is required`)
  if (typeof v !== type) throw new UsageError(`--${flag}: expected a ${type}`)
  return v as T
}

async function withStore<T> (path: string, fn: (store: SiteStore) => Promise<T>): Promise<T> {
  await mkdir(path, { recursive: true })
  const store = await openSiteStore(path)
  try {
    return await fn(store)
  } finally {
    await store.close()
  }
}

async function check (argv: string[]): Promise<number> {
  const usage = 'forgemesh data check <file> --schema <schema.json> [--site DIR] [--json]'
  const parsed = parseArgs(argv, CHECK_FLAGS)
  if (parsed.flags.help === true) {
    process.stdout.write(helpText(usage, 'Runs the suitability gate over a table and prints, for every column, its findings and the decision: train, synthesize or drop.', CHECK_FLAGS) + '\n')
    return 0
  }
  const file = one(parsed, usage)
  const { schema, policy } = await readSchemaFile(need<string>(parsed, 'schema', 'string'))
  const raw = await readRawTable(file, schema, { skipBadRows: policy.skipBadRows, maxBytes: policy.maxBytes })
  const columns: Record<string, string[]> = {}
  schema.columns.forEach((c, k) => { columns[c.name] = raw.rows.map(r => r.cells[k]!) })
  const report = runGate(columns, schema, policy, { dataset: datasetName(file) })
  const site = parsed.flags.site
  if (typeof site === 'string') await withStore(site, async store => { await storeGateReport(store, report) })
  if (parsed.flags.json === true) process.stdout.write(JSON.stringify({ ok: true, gate: report, skipped: raw.skipped }) + '\n')
  else process.stdout.write(formatGateReport(report) + (raw.skipped > 0 ? `\n(${raw.skipped} bad rows skipped under the policy's skipBadRows)` : '') + '\n')
  return 0
}

async function synth (argv: string[]): Promise<number> {
  const usage = 'forgemesh data synth <file> --schema <schema.json> --epsilon E --delta D --rows N --out <out.csv> [--report <report.json>]'
  const parsed = parseArgs(argv, SYNTH_FLAGS)
  if (parsed.flags.help === true) {
    process.stdout.write(helpText(usage, 'Writes differentially private synthetic rows (MST: noisy marginals along a private spanning tree) and a quality report; (epsilon, delta) is charged to the site\'s privacy ledger, and a run the budget cannot pay for is refused before any work.', SYNTH_FLAGS) + '\n')
    return 0
  }
  const file = one(parsed, usage)
  const schemaFile = need<string>(parsed, 'schema', 'string')
  const epsilon = need<number>(parsed, 'epsilon', 'number')
  const delta = need<number>(parsed, 'delta', 'number')
  const rows = need<number>(parsed, 'rows', 'number')
  const out = need<string>(parsed, 'out', 'string')
  const { schema, policy } = await readSchemaFile(schemaFile)
  const seedFlag = parsed.flags.seed as string | undefined
  const seed = seedFlag === undefined ? 0 : (/^\d+$/.test(seedFlag) ? Number(seedFlag) : seedFlag)
  const json = parsed.flags.json === true
  const logger = createLogger('forgemesh:data', { level: json ? 'warn' : 'info' })

  const { result, status } = await withStore(String(parsed.flags.site ?? DEFAULT_SITE), async store => {
    const ledger = await openLedger(store, parsed)
    const result = await runSynthesis({
      file,
      schema,
      policy,
      epsilon,
      delta,
      rows,
      out,
      seed,
      ...(parsed.flags.bins === undefined ? {} : { bins: parsed.flags.bins as number }),
      ...(parsed.flags.holdout === undefined ? {} : { holdoutFraction: parsed.flags.holdout as number })
    }, { store, ledger, clock: systemClock, logger })
    return { result, status: await ledger.status() }
  })
  const reportFile = parsed.flags.report
  if (typeof reportFile === 'string') await writeFile(reportFile, JSON.stringify(result.report, null, 2) + '\n')
  if (json) {
    process.stdout.write(JSON.stringify({ ok: true, id: result.record.id, out, report: result.report, ledger: status }) + '\n')
    return 0
  }
  const r = result.report
  const pct = (x: number): string => `${(100 * x).toFixed(1)}%`
  process.stdout.write([
    `wrote ${r.rows.synthetic} synthetic rows to ${out} (eps=${epsilon}, delta=${delta}; fitted on ${r.rows.train} of ${r.rows.real} real rows, ${r.rows.holdout} held out, ${r.rows.skipped} skipped)`,
    `tree: ${r.tree.map(([a, b]) => `${a} - ${b}`).join(', ') || '(one column)'}`,
    `marginal TVD: 1-way ${r.tvd.oneWay.mean.toFixed(3)}, 2-way ${r.tvd.twoWay.mean.toFixed(3)}`,
    r.mlEfficacy === null ? 'ML efficacy: n/a (no categorical label or no holdout)' : `ML efficacy (${r.mlEfficacy.label}): ${r.mlEfficacy.ratio.toFixed(3)} (synthetic ${pct(r.mlEfficacy.syntheticAccuracy)} vs real ${pct(r.mlEfficacy.realAccuracy)} on held-out rows)`,
    `exact matches: ${pct(r.privacyCheck.exactMatchRate)}; distance to closest record, median ${r.privacyCheck.distanceToClosestRecord.median.toFixed(3)} (held-out real rows: ${r.privacyCheck.distanceToClosestRecord.holdoutMedian?.toFixed(3) ?? 'n/a'})`,
    `privacy ledger: eps ${status.spent.epsilon.toPrecision(4)} of ${status.epsilonBudget} spent, delta ${status.spent.delta.toPrecision(3)} of ${status.delta}`,
    ...(typeof reportFile === 'string' ? [`report: ${reportFile}`] : []),
    `stored as run ${result.record.id} of ${basename(file)}`
  ].join('\n') + '\n')
  return 0
}

/**
 * The site's ledger. Its budget is fixed when it is first created: an existing
 * ledger keeps its own (flags that disagree are a ConfigError), a new one
 * takes the flags or the defaults.
 */
async function openLedger (store: SiteStore, parsed: Parsed): Promise<PrivacyLedger> {
  const stored = await readLedgerBudget(store)
  const epsilonBudget = parsed.flags['budget-epsilon'] ?? stored?.epsilonBudget ?? DEFAULT_BUDGET.epsilonBudget
  const delta = parsed.flags['budget-delta'] ?? stored?.delta ?? DEFAULT_BUDGET.delta
  return createPrivacyLedger(store, { epsilonBudget: epsilonBudget as number, delta: delta as number }, { clock: systemClock })
}
