/**
 * A user's table, from file to the float32 rows the trainer gets: read and
 * checked against the schema, passed through the suitability gate, then
 * encoded. Numeric columns are standardised with the mean and standard
 * deviation of this site's rows (computed here, they never leave); categorical
 * columns are one-hot in their declared order, so every site shares one
 * feature space. Only columns the gate decided to train on are encoded.
 */
import { basename } from 'node:path'
import { DatasetSchemaError, EmptyDataFileError } from '../errors.ts'
import { runGate, type GateReport } from './gate.ts'
import { checkPolicyAgainstSchema, parseDatasetPolicy, parseDatasetSchema, type ColumnSpec, type DatasetPolicyInput, type DatasetSchemaSpec } from './schema.ts'
import { BadRows, readRawTable, type TableFormat } from './table.ts'
import type { LabeledData } from './types.ts'
import { parseCell } from './values.ts'

export interface NumericStats {
  mean: number
  /** Population standard deviation; 1 where the column is constant, so it encodes as 0. */
  std: number
}

export interface LoadedTable {
  data: LabeledData
  /** One name per feature: the numeric column, or `column=category` for one-hot. */
  featureNames: string[]
  /** Class names in label-index order (the label column's declared categories). */
  classes: string[]
  /** Rows skipped under skipBadRows, and the first few reasons. */
  skipped: number
  problems: string[]
  stats: { rows: number, numeric: Record<string, NumericStats> }
  gate: GateReport
  /** The source line of each row of `data`. */
  lines: Int32Array
  /** The site/grouping column's value for each row, when the schema has one. */
  groups?: string[]
}

export interface LoadTableOptions {
  format?: TableFormat
  /** Names the dataset in the gate report. Default: the file's base name. */
  dataset?: string
  signal?: AbortSignal
}

export async function loadTable (file: string, schemaInput: DatasetSchemaSpec, policyInput: DatasetPolicyInput = {}, options: LoadTableOptions = {}): Promise<LoadedTable> {
  const schema = parseDatasetSchema(schemaInput)
  const policy = parseDatasetPolicy(policyInput)
  checkPolicyAgainstSchema(schema, policy)
  // Structural errors are settled together with value errors, so the earliest line is reported.
  const raw = await readRawTable(file, schema, {
    skipBadRows: true,
    maxBytes: policy.maxBytes,
    ...(options.format === undefined ? {} : { format: options.format }),
    ...(options.signal === undefined ? {} : { signal: options.signal })
  })

  const rawColumns: Record<string, string[]> = {}
  schema.columns.forEach((c, k) => { rawColumns[c.name] = raw.rows.map(r => r.cells[k]!) })
  const gate = runGate(rawColumns, schema, policy, { dataset: options.dataset ?? basename(file) })
  const decisionOf = (name: string): string => gate.columns.find(c => c.column === name)!.decision

  const labelIdx = schema.columns.findIndex(c => c.kind === 'label')
  const labelSpec = schema.columns[labelIdx]!
  if (decisionOf(labelSpec.name) !== 'train') {
    throw new DatasetSchemaError(`${file}: the label column '${labelSpec.name}' cannot be trained on: ${gate.columns[labelIdx]!.why}`)
  }
  const features = schema.columns.map((spec, k) => ({ spec, k }))
    .filter(({ spec }) => (spec.kind === 'numeric' || spec.kind === 'categorical') && decisionOf(spec.name) === 'train')
  if (features.length === 0) throw new DatasetSchemaError(`${file}: the gate left no feature column to train on (see its report)`)
  const siteIdx = schema.columns.findIndex(c => c.kind === 'site')

  // Parse only what is used; a bad value in a dropped column does not sink its row.
  const bad = new BadRows()
  const kept: Array<{ line: number, feats: Array<number | string>, label: number, group?: string }> = []
  for (const row of raw.rows) {
    try {
      const feats = features.map(({ spec, k }) => parseCell(spec, row.cells[k]!, file, row.line))
      const label = labelSpec.categories!.indexOf(parseCell(labelSpec, row.cells[labelIdx]!, file, row.line) as string)
      const group = siteIdx >= 0 ? parseCell(schema.columns[siteIdx]!, row.cells[siteIdx]!, file, row.line) as string : undefined
      kept.push(group === undefined ? { line: row.line, feats, label } : { line: row.line, feats, label, group })
    } catch (err) {
      bad.add(err)
    }
  }
  const { skipped, problems } = bad.settle(policy.skipBadRows, raw.errors)
  if (kept.length === 0) throw new EmptyDataFileError(`no usable rows: all ${skipped} rows were bad (first: ${problems[0] ?? 'none'})`, file)

  const numeric: Record<string, NumericStats> = {}
  features.forEach(({ spec }, f) => {
    if (spec.kind !== 'numeric') return
    let sum = 0
    for (const r of kept) sum += r.feats[f] as number
    const mean = sum / kept.length
    let sq = 0
    for (const r of kept) sq += ((r.feats[f] as number) - mean) ** 2
    const std = Math.sqrt(sq / kept.length)
    numeric[spec.name] = { mean, std: std > 0 ? std : 1 }
  })

  const widthOf = (spec: ColumnSpec): number => (spec.kind === 'numeric' ? 1 : spec.categories!.length)
  const dim = features.reduce((a, { spec }) => a + widthOf(spec), 0)
  const n = kept.length
  const x = new Float32Array(n * dim)
  const y = new Int32Array(n)
  const lines = new Int32Array(n)
  kept.forEach((r, i) => {
    let off = i * dim
    features.forEach(({ spec }, f) => {
      const v = r.feats[f]!
      if (spec.kind === 'numeric') {
        const s = numeric[spec.name]!
        x[off] = ((v as number) - s.mean) / s.std
      } else {
        x[off + spec.categories!.indexOf(v as string)] = 1
      }
      off += widthOf(spec)
    })
    y[i] = r.label
    lines[i] = r.line
  })
  const featureNames = features.flatMap(({ spec }) => (spec.kind === 'numeric' ? [spec.name] : spec.categories!.map(c => `${spec.name}=${c}`)))
  const result: LoadedTable = {
    data: { x, y, n, dim, numClasses: labelSpec.categories!.length },
    featureNames,
    classes: [...labelSpec.categories!],
    skipped,
    problems,
    stats: { rows: n, numeric },
    gate,
    lines
  }
  if (siteIdx >= 0) result.groups = kept.map(r => r.group!)
  return result
}
