/**
 * The suitability gate: decides, column by column, what may be trained on.
 * The site's policy marks columns usable, restricted or drop; detectors flag
 * likely direct identifiers whatever the policy says. Decisions, first match
 * wins:
 *   1. a detector found identifiers        -> drop (never trained on or synthesized)
 *   2. declared an id column               -> drop
 *   3. the policy says drop                -> drop
 *   4. free text (declared or detected)    -> drop (may hold anything; no text features)
 *   5. the site/grouping column            -> drop (splits rows, is not a feature)
 *   6. the policy says restricted          -> synthesize or drop, as the policy says
 *   7. otherwise (numeric, categorical, the label) -> train
 * The report holds counts and reasons, never values, so it can be printed
 * and stored with the site.
 */
import { z } from 'zod'
import type { SiteStore } from '../store.ts'
import { describeFinding, detectColumn, isIdentifier, type Finding } from './detectors.ts'
import { checkPolicyAgainstSchema, markOf, parseDatasetPolicy, parseDatasetSchema, type DatasetPolicyInput, type DatasetSchemaSpec } from './schema.ts'

export const GATE_DECISIONS = ['train', 'synthesize', 'drop'] as const
export type GateDecision = typeof GATE_DECISIONS[number]

export const GateColumnSchema = z.strictObject({
  column: z.string(),
  kind: z.string(),
  mark: z.enum(['usable', 'restricted', 'drop']),
  findings: z.array(z.string()),
  detected: z.array(z.enum(['email', 'phone', 'card', 'iban', 'national-id', 'free-text'])),
  decision: z.enum(GATE_DECISIONS),
  why: z.string()
})
export type GateColumn = z.infer<typeof GateColumnSchema>

export const GateReportSchema = z.strictObject({
  dataset: z.string(),
  rows: z.number().int().nonnegative(),
  columns: z.array(GateColumnSchema)
})
export type GateReport = z.infer<typeof GateReportSchema>

/** Raw text of each column, by name (e.g. from readRawTable). */
export type RawColumns = Readonly<Record<string, readonly string[]>>

export interface GateOptions {
  /** Names the dataset in the report and its store key. Default 'dataset'. */
  dataset?: string
}

export function runGate (columns: RawColumns, schemaInput: DatasetSchemaSpec, policyInput: DatasetPolicyInput = {}, options: GateOptions = {}): GateReport {
  const schema = parseDatasetSchema(schemaInput)
  const policy = parseDatasetPolicy(policyInput)
  checkPolicyAgainstSchema(schema, policy)
  let rows = 0
  const out: GateColumn[] = schema.columns.map(spec => {
    const values = columns[spec.name] ?? []
    rows = Math.max(rows, values.length)
    // Declared categories bound what a categorical or label column can hold: no free text there.
    const findings: Finding[] = detectColumn(values, { freeText: spec.categories === undefined && spec.kind !== 'numeric' })
    const mark = markOf(policy, spec.name)
    const identifiers = findings.filter(f => isIdentifier(f.kind))
    const freeText = spec.kind === 'text' || findings.some(f => f.kind === 'free-text')
    const decide = (): [GateDecision, string] => {
      if (identifiers.length > 0) return ['drop', `likely direct identifiers (${identifiers.map(f => f.kind).join(', ')}): never trained on or synthesized, whatever the policy says`]
      if (spec.kind === 'id') return ['drop', 'declared an identifier column: identifiers are never features']
      if (mark === 'drop') return ['drop', 'the policy marks it drop']
      if (freeText) return ['drop', 'free text may hold anything (names, notes); it is not a feature and the synthetic generator takes only numeric and categorical columns']
      if (spec.kind === 'site') return ['drop', 'the grouping column splits rows between sites; it is not a feature']
      if (mark === 'restricted') {
        return policy.restricted === 'synthesize'
          ? ['synthesize', 'the policy marks it restricted: it goes to the DP synthetic-data generator, never to training directly']
          : ['drop', 'the policy marks it restricted and sends restricted columns nowhere']
      }
      if (spec.kind === 'label') return ['train', 'the label']
      return ['train', 'usable by the policy; no identifier found']
    }
    const [decision, why] = decide()
    return {
      column: spec.name,
      kind: spec.kind,
      mark,
      findings: findings.map(describeFinding),
      detected: findings.map(f => f.kind),
      decision,
      why
    }
  })
  return { dataset: options.dataset ?? 'dataset', rows, columns: out }
}

/** Columns of a report with the given decision, in schema order. */
export function columnsWithDecision (report: GateReport, decision: GateDecision): string[] {
  return report.columns.filter(c => c.decision === decision).map(c => c.column)
}

/** A fixed-width table: column, kind, policy mark, findings, decision, why. */
export function formatGateReport (report: GateReport): string {
  const head = ['column', 'kind', 'policy', 'findings', 'decision', 'why']
  const body = report.columns.map(c => [c.column, c.kind, c.mark, c.findings.length > 0 ? c.findings.join('; ') : '-', c.decision, c.why])
  const widths = head.slice(0, 5).map((h, k) => Math.max(h.length, ...body.map(r => r[k]!.length)))
  const line = (r: string[]): string => r.map((cell, k) => (k < 5 ? cell.padEnd(widths[k]!) : cell)).join('  ').trimEnd()
  const counts = (['train', 'synthesize', 'drop'] as const).map(d => `${columnsWithDecision(report, d).length} ${d}`).join(', ')
  return [`suitability gate: ${report.dataset}, ${report.rows} rows; ${counts}`, line(head), ...body.map(line)].join('\n')
}

function gateKey (dataset: string): string {
  return `gate/${dataset}`
}

/** Stores the report with the site (sublevel 'meta', key gate/<dataset>). */
export async function storeGateReport (store: SiteStore, report: GateReport): Promise<void> {
  await store.putJson('meta', gateKey(report.dataset), GateReportSchema.parse(report))
}

/** Reads a stored report back, validated; undefined if none was stored. */
export async function loadGateReport (store: SiteStore, dataset: string): Promise<GateReport | undefined> {
  return await store.getJson('meta', gateKey(dataset), GateReportSchema)
}
