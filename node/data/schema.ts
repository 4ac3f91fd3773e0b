/**
 * The declared shape of a site's own table (CSV or JSONL) and the site's
 * dataset policy. Both come from a user's config file, so both are validated
 * with zod; types come from z.infer.
 *
 * Categories (for categorical and label columns) are declared, not read off
 * the data: every site must one-hot into the same feature space, and a site's
 * own category list would itself say something about its rows.
 */
import { z } from 'zod'
import { describeIssues } from '../../protocols/validation.ts'
import { DatasetSchemaError } from '../errors.ts'

export const COLUMN_KINDS = ['numeric', 'categorical', 'label', 'site', 'text', 'id'] as const
export type ColumnKind = typeof COLUMN_KINDS[number]

export const ColumnSchema = z.strictObject({
  name: z.string().min(1).max(200),
  kind: z.enum(COLUMN_KINDS),
  /** categorical: the one-hot order; label: the classes, in class-index order. */
  categories: z.array(z.string()).min(1).max(10_000).optional(),
  /** numeric: values outside [min, max] are bad input. */
  bounds: z.strictObject({ min: z.number(), max: z.number() }).refine(b => b.min < b.max, 'bounds need min < max').optional(),
  /** numeric: values must be whole numbers. */
  integer: z.boolean().optional()
})
export type ColumnSpec = z.infer<typeof ColumnSchema>

export const DatasetSchema = z.strictObject({
  columns: z.array(ColumnSchema).min(1).max(10_000)
}).superRefine((s, ctx) => {
  const seen = new Set<string>()
  s.columns.forEach((c, i) => {
    if (seen.has(c.name)) ctx.addIssue({ code: 'custom', path: ['columns', i, 'name'], message: `column '${c.name}' is declared twice` })
    seen.add(c.name)
    const needsCategories = c.kind === 'categorical' || c.kind === 'label'
    if (needsCategories && c.categories === undefined) ctx.addIssue({ code: 'custom', path: ['columns', i, 'categories'], message: `a ${c.kind} column must declare its categories` })
    if (c.categories !== undefined && new Set(c.categories).size !== c.categories.length) ctx.addIssue({ code: 'custom', path: ['columns', i, 'categories'], message: 'categories must be unique' })
    if (!needsCategories && c.categories !== undefined) ctx.addIssue({ code: 'custom', path: ['columns', i, 'categories'], message: `a ${c.kind} column takes no categories` })
    if (c.kind !== 'numeric' && (c.bounds !== undefined || c.integer !== undefined)) ctx.addIssue({ code: 'custom', path: ['columns', i, 'bounds'], message: 'only numeric columns take bounds or integer' })
  })
  const count = (k: ColumnKind): number => s.columns.filter(c => c.kind === k).length
  if (count('label') !== 1) ctx.addIssue({ code: 'custom', path: ['columns'], message: `exactly one label column is required, found ${count('label')}` })
  if (count('site') > 1) ctx.addIssue({ code: 'custom', path: ['columns'], message: 'at most one site column is allowed' })
})
export type DatasetSchemaSpec = z.infer<typeof DatasetSchema>

export const COLUMN_MARKS = ['usable', 'restricted', 'drop'] as const
export type ColumnMark = typeof COLUMN_MARKS[number]

export const DatasetPolicy = z.strictObject({
  /** The site's mark per column; columns it does not name get `defaultMark`. */
  columns: z.record(z.string(), z.enum(COLUMN_MARKS)).default({}),
  defaultMark: z.enum(COLUMN_MARKS).default('usable'),
  /** What happens to a restricted column: the DP synthetic-data generator, or nothing. */
  restricted: z.enum(['synthesize', 'drop']).default('synthesize'),
  /** Skip (and count) bad rows instead of refusing the file. */
  skipBadRows: z.boolean().default(false),
  /** Files above this size are refused before they are read. */
  maxBytes: z.number().int().positive().default(256 * 1024 * 1024)
})
export type DatasetPolicySpec = z.infer<typeof DatasetPolicy>
export type DatasetPolicyInput = z.input<typeof DatasetPolicy>

function parseWith<S extends z.ZodType> (schema: S, input: unknown, what: string): z.infer<S> {
  const r = schema.safeParse(input)
  if (r.success) return r.data
  throw new DatasetSchemaError(`invalid ${what}: ${describeIssues(r.error.issues, input).join('; ')}`)
}

/** Validates a dataset schema (e.g. from a config file); DatasetSchemaError names the field. */
export function parseDatasetSchema (input: unknown): DatasetSchemaSpec {
  return parseWith(DatasetSchema, input, 'dataset schema')
}

/** Validates a dataset policy, filling defaults; DatasetSchemaError names the field. */
export function parseDatasetPolicy (input: unknown = {}): DatasetPolicySpec {
  const policy = parseWith(DatasetPolicy, input, 'dataset policy')
  return policy
}

/** A policy that names a column the schema does not declare is a mistake, not a no-op. */
export function checkPolicyAgainstSchema (schema: DatasetSchemaSpec, policy: DatasetPolicySpec): void {
  const names = new Set(schema.columns.map(c => c.name))
  for (const name of Object.keys(policy.columns)) {
    if (!names.has(name)) throw new DatasetSchemaError(`dataset policy marks column '${name}', which the schema does not declare`)
  }
}

export function markOf (policy: DatasetPolicySpec, column: string): ColumnMark {
  return policy.columns[column] ?? policy.defaultMark
}

/** A raw, validated value: numeric columns as numbers, everything else as the string given. */
export type RawValue = number | string

export interface RawRecord {
  /** 1-based line of the record in its file. */
  line: number
  values: Record<string, RawValue>
}
