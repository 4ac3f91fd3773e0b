/**
 * A synthetic run at a site: read the real rows (validated against the
 * schema), check the privacy ledger BEFORE any work, fit and sample the MST
 * generator on the training share, assess quality against the held-out
 * share, charge the ledger, and only then write the synthetic CSV and store
 * the decision and report with the site. A run the budget cannot pay for is
 * refused with PrivacyBudgetExceededError before the file is even read, and
 * a charge that fails at the end leaves no output behind.
 */
import { createHash } from 'node:crypto'
import { readFile, rename, writeFile } from 'node:fs/promises'
import { basename } from 'node:path'
import { createSeededRandom, type Clock, type Logger } from '../../../coordinator/components.ts'
import { InvalidArgumentError } from '../../../coordinator/errors.ts'
import type { RawValue } from '../../../coordinator/synthetic/domain.ts'
import { assessQuality, splitHoldout, synthesize } from '../../../coordinator/synthetic/generator.ts'
import { DataFileNotFoundError, PrivacyBudgetExceededError } from '../../errors.ts'
import type { SiteStore } from '../../store.ts'
import { checkPolicyAgainstSchema, parseDatasetPolicy, parseDatasetSchema, type DatasetPolicyInput, type DatasetSchemaSpec } from '../schema.ts'
import { runGate, storeGateReport, type GateReport } from '../gate.ts'
import { readRawTable, readRecords, type TableFormat } from '../table.ts'
import { formatCsv } from './csv-out.ts'
import { planSynthesis, syntheticSchemaOf, type PlanOptions } from './plan.ts'
import { loadSyntheticRun, storeSyntheticRun, type SyntheticReport, type SyntheticRunRecord } from './report.ts'

/** What a synthetic run spends; the ledger's own release type is wider. */
export interface SyntheticRelease {
  kind: 'synthetic'
  epsilon: number
  delta: number
  label: string
}

/**
 * The part of the site's privacy ledger (node/privacy/ledger.ts) a synthetic
 * run needs. The run charges its (epsilon, delta) as asked, which the ledger
 * adds up by basic composition.
 */
export interface SyntheticLedger {
  canCharge: (release: SyntheticRelease) => Promise<{ ok: boolean, reason?: string }>
  charge: (release: SyntheticRelease) => Promise<unknown>
}

export interface SynthesisRequest extends PlanOptions {
  file: string
  schema: DatasetSchemaSpec
  policy?: DatasetPolicyInput
  format?: TableFormat
  epsilon: number
  delta: number
  /** Synthetic rows to write. */
  rows: number
  /** Where to write the synthetic CSV; without it nothing is written (the rows are returned). */
  out?: string
  seed?: number | string
  /** Share of real rows held out from the generator to measure ML efficacy honestly. Default 0.2; 0 disables it. */
  holdoutFraction?: number
  signal?: AbortSignal
}

export interface SynthesisComponents {
  store: SiteStore
  ledger: SyntheticLedger
  clock: Clock
  logger: Logger
}

export interface SynthesisResult {
  record: SyntheticRunRecord
  report: SyntheticReport
  gate: GateReport
  /** Header and rows of the synthetic table, and the schema that reads it back. */
  header: string[]
  rows: RawValue[][]
  schema: DatasetSchemaSpec
}

export const DEFAULT_HOLDOUT = 0.2

/** The dataset's name in stored gate reports: its file name. */
export function datasetName (file: string): string {
  return basename(file)
}

/** A zero-padded time (so ids sort oldest first), a short hash of the request, and a suffix if that is taken. */
async function freshRunId (store: SiteStore, now: number, r: SynthesisRequest): Promise<string> {
  const what = JSON.stringify([r.file, r.epsilon, r.delta, r.rows, r.seed ?? 0, r.out ?? null])
  const base = `${String(Math.floor(now)).padStart(15, '0')}-${createHash('sha256').update(what).digest('hex').slice(0, 8)}`
  let id = base
  for (let k = 2; (await loadSyntheticRun(store, id)) !== undefined; k++) id = `${base}-${k}`
  return id
}

function rawColumns (table: { rows: { cells: string[] }[] }, schema: DatasetSchemaSpec): Record<string, string[]> {
  const out: Record<string, string[]> = {}
  schema.columns.forEach((c, k) => { out[c.name] = table.rows.map(r => r.cells[k]!) })
  return out
}

function checkRequest (r: SynthesisRequest): void {
  if (!(r.epsilon > 0) || !Number.isFinite(r.epsilon)) throw new InvalidArgumentError(`epsilon must be a finite number > 0, got ${r.epsilon}`)
  if (!(r.delta > 0 && r.delta < 1)) throw new InvalidArgumentError(`delta must be in (0, 1), got ${r.delta}`)
  if (!Number.isInteger(r.rows) || r.rows < 1 || r.rows > 10_000_000) throw new InvalidArgumentError(`rows must be an integer in 1..10000000, got ${r.rows}`)
  const h = r.holdoutFraction ?? DEFAULT_HOLDOUT
  if (!(h >= 0 && h <= 0.5)) throw new InvalidArgumentError(`the holdout fraction must be in [0, 0.5], got ${h}`)
}

async function sha256File (file: string, signal?: AbortSignal): Promise<string> {
  try {
    return createHash('sha256').update(await readFile(file, signal === undefined ? {} : { signal })).digest('hex')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new DataFileNotFoundError('no such file', file, undefined, { cause: err })
    throw err
  }
}

export async function runSynthesis (request: SynthesisRequest, components: SynthesisComponents): Promise<SynthesisResult> {
  const { store, ledger, clock, logger } = components
  const signal = request.signal
  checkRequest(request)
  const schema = parseDatasetSchema(request.schema)
  const policy = parseDatasetPolicy(request.policy ?? {})
  checkPolicyAgainstSchema(schema, policy)
  const seed = request.seed ?? 0
  const holdoutFraction = request.holdoutFraction ?? DEFAULT_HOLDOUT

  const id = await freshRunId(store, clock.now(), request)
  const release: SyntheticRelease = { kind: 'synthetic', epsilon: request.epsilon, delta: request.delta, label: `synthetic:${id}:${datasetName(request.file)}`.slice(0, 200) }
  const projection = await ledger.canCharge(release)
  if (!projection.ok) {
    throw new PrivacyBudgetExceededError(`a synthetic run at eps=${request.epsilon}, delta=${request.delta} would exceed the site's privacy budget (${projection.reason ?? 'refused'}); refused before reading ${request.file}`)
  }
  const sourceHash = await sha256File(request.file, signal)

  const readOptions = {
    skipBadRows: policy.skipBadRows,
    maxBytes: policy.maxBytes,
    ...(request.format === undefined ? {} : { format: request.format }),
    ...(signal === undefined ? {} : { signal })
  }
  // The gate sees the raw text (its detectors look for identifiers in it); its drops are final.
  const gate = runGate(rawColumns(await readRawTable(request.file, schema, readOptions), schema), schema, policy, { dataset: datasetName(request.file) })
  const plan = planSynthesis(schema, policy, request, gate)
  const { records, skipped } = await readRecords(request.file, schema, readOptions)
  signal?.throwIfAborted()
  const names = schema.columns.map(c => c.name)
  const real = records.map(r => plan.schemaIndex.map(k => r.values[names[k]!]!))
  const random = createSeededRandom(seed)
  const split = splitHoldout(real.length, holdoutFraction, random.fork('holdout'))
  const train = split.train.map(i => real[i]!)
  const holdout = split.holdout.map(i => real[i]!)

  const synthesis = synthesize(plan.domain, train, { epsilon: request.epsilon, delta: request.delta, rows: request.rows }, random.fork('generator'))
  signal?.throwIfAborted()
  const quality = assessQuality(plan.domain, { train, holdout, synthetic: synthesis.rows }, plan.label === undefined ? {} : { label: plan.label }, random.fork('quality'))
  const { budget } = synthesis
  const report: SyntheticReport = {
    version: 1,
    generator: 'mst',
    privacy: { epsilon: request.epsilon, delta: request.delta, rho: budget.rho, conversion: 'cks20', neighbouring: 'add/remove one row', sigmaOneWay: budget.sigmaOneWay, sigmaTwoWay: budget.sigmaTwoWay, selectEpsilon: budget.selectEpsilon },
    rows: { real: real.length, train: train.length, holdout: holdout.length, skipped, synthetic: synthesis.rows.length },
    tree: synthesis.tree,
    tvd: { oneWay: quality.fidelity.oneWay, twoWay: quality.fidelity.twoWay },
    mlEfficacy: quality.mlEfficacy,
    privacyCheck: {
      exactMatchRate: quality.privacy.exactMatchRate,
      holdoutExactMatchRate: quality.privacy.holdoutExactMatchRate,
      distanceToClosestRecord: { metric: 'gower', ...quality.privacy.dcr }
    }
  }

  // Pay first: if the ledger refuses now (a concurrent release), nothing is written.
  signal?.throwIfAborted()
  await ledger.charge(release)
  const header = plan.domain.columns.map(c => c.name)
  let output: SyntheticRunRecord['output'] = null
  if (request.out !== undefined) {
    const csv = formatCsv(header, synthesis.rows)
    const tmp = `${request.out}.${id}.tmp`
    await writeFile(tmp, csv, { mode: 0o600 })
    await rename(tmp, request.out)
    output = { file: request.out, sha256: createHash('sha256').update(csv).digest('hex') }
  }
  const bins: Record<string, number> = {}
  for (const c of plan.domain.columns) if (c.kind === 'numeric') bins[c.name] = c.bins
  const record: SyntheticRunRecord = {
    id,
    createdAt: clock.now(),
    seed,
    source: { file: request.file, sha256: sourceHash },
    output,
    decisions: plan.decisions,
    bins,
    holdoutFraction,
    ledgerLabel: release.label,
    report
  }
  await storeGateReport(store, gate)
  await storeSyntheticRun(store, record)
  logger.info('synthetic.done', { id, epsilon: request.epsilon, delta: request.delta, realRows: real.length, syntheticRows: synthesis.rows.length, tvd1: report.tvd.oneWay.mean, tvd2: report.tvd.twoWay.mean, efficacy: report.mlEfficacy?.ratio ?? null })
  return { record, report, gate, header, rows: synthesis.rows, schema: syntheticSchemaOf(schema, plan) }
}
