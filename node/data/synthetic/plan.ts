/**
 * From a site's dataset schema and policy to the generator's domain: which
 * columns are synthesised, which are left out, and why. This is the
 * "decision" half of what a synthetic run stores with the site.
 *
 * A table with any restricted column is synthesised as a whole, jointly:
 * synthesising only the restricted columns and gluing them to real rows would
 * either break their correlations or tie synthetic values to real people.
 */
import { createDomain, type Domain, type SynthColumn } from '../../../coordinator/synthetic/domain.ts'
import { SyntheticSchemaError } from '../../errors.ts'
import type { GateReport } from '../gate.ts'
import { markOf, type DatasetPolicySpec, type DatasetSchemaSpec } from '../schema.ts'

/** Equal-width bins per numeric column unless the run says otherwise: few enough that eps = 1 on a few hundred rows still sees signal. */
export const DEFAULT_BINS = 8

export interface ColumnDecision {
  column: string
  action: 'synthesize' | 'exclude'
  why: string
}

export interface SynthesisPlan {
  domain: Domain
  /** Schema index of each domain column (the order of raw record values). */
  schemaIndex: number[]
  decisions: ColumnDecision[]
  /** Index into domain.columns of the label, when it is synthesised. */
  label: number | undefined
}

export interface PlanOptions {
  bins?: number
  /** Per-column bin counts that override `bins`. */
  binsByColumn?: Record<string, number>
}

/** Whether the gate sends anything of this table to the generator. */
export function needsSynthesis (gate: GateReport): boolean {
  return gate.columns.some(c => c.decision === 'synthesize')
}

/**
 * With a gate report, the gate's 'drop' decisions (detected identifiers, ids,
 * free text, the site column, the policy's drops) are final; its 'train' and
 * 'synthesize' columns are synthesised together.
 */
export function planSynthesis (schema: DatasetSchemaSpec, policy: DatasetPolicySpec, options: PlanOptions = {}, gate?: GateReport): SynthesisPlan {
  const columns: SynthColumn[] = []
  const schemaIndex: number[] = []
  const decisions: ColumnDecision[] = []
  let label: number | undefined
  for (const name of Object.keys(options.binsByColumn ?? {})) {
    if (!schema.columns.some(c => c.name === name && c.kind === 'numeric')) throw new SyntheticSchemaError(`bins are given for '${name}', which is not a numeric column of the schema`)
  }
  schema.columns.forEach((spec, k) => {
    const exclude = (why: string): void => { decisions.push({ column: spec.name, action: 'exclude', why }) }
    const gated = gate?.columns.find(c => c.column === spec.name)
    if (gated?.decision === 'drop') return exclude(`the suitability gate drops it: ${gated.why}`)
    if (markOf(policy, spec.name) === 'drop') return exclude('the dataset policy drops it')
    switch (spec.kind) {
      case 'id':
        return exclude('an identifier is never synthesised: a generated one would either be meaningless or collide with a real one')
      case 'text':
        return exclude('free text has no small marginal to measure; it is never synthesised')
      case 'site':
        return exclude('a site column declares no categories, and reading them off the rows would leak them')
      case 'numeric': {
        if (spec.bounds === undefined) {
          throw new SyntheticSchemaError(`column '${spec.name}' is numeric but declares no bounds: the synthetic generator bins between bounds from the schema, never from the data (add "bounds": { "min": ..., "max": ... })`)
        }
        const bins = options.binsByColumn?.[spec.name] ?? options.bins ?? DEFAULT_BINS
        columns.push({ name: spec.name, kind: 'numeric', min: spec.bounds.min, max: spec.bounds.max, bins, integer: spec.integer === true })
        break
      }
      case 'categorical':
      case 'label':
        if (spec.kind === 'label') label = columns.length
        columns.push({ name: spec.name, kind: 'categorical', categories: spec.categories! })
        break
      default: {
        const never: never = spec.kind
        throw new SyntheticSchemaError(`column '${spec.name}': unknown kind ${String(never)}`)
      }
    }
    schemaIndex.push(k)
    decisions.push({ column: spec.name, action: 'synthesize', why: markOf(policy, spec.name) === 'restricted' ? 'restricted by the dataset policy' : 'usable; synthesised jointly with the rest of the table' })
  })
  if (columns.length === 0) throw new SyntheticSchemaError('no column of the schema can be synthesised (every column is dropped, an id, free text or a site column)')
  try {
    return { domain: createDomain(columns), schemaIndex, decisions, label }
  } catch (err) {
    throw new SyntheticSchemaError((err as Error).message, { cause: err })
  }
}

/** The schema of the synthetic table: the synthesised columns, as declared. */
export function syntheticSchemaOf (schema: DatasetSchemaSpec, plan: SynthesisPlan): DatasetSchemaSpec {
  return { columns: plan.schemaIndex.map(k => schema.columns[k]!) }
}
