/**
 * One cell of a user's table, checked against its declared column: numbers
 * must be finite, inside declared bounds and whole where declared integer;
 * categories and labels must be declared ones. Errors name file:line and the
 * column, never echoing more than a short prefix of the value.
 */
import { BadValueError, UnknownLabelError } from '../errors.ts'
import type { ColumnSpec, RawValue } from './schema.ts'

// Plain decimal or scientific notation; rejects '', 'NaN', 'Infinity', '0x1f', '1,5'.
const NUMBER_RE = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/

function show (value: string): string {
  return JSON.stringify(value.length > 24 ? value.slice(0, 21) + '...' : value)
}

function listed (categories: readonly string[]): string {
  const shown = categories.slice(0, 8).map(c => JSON.stringify(c)).join(', ')
  return categories.length > 8 ? `${shown}, ... (${categories.length} in all)` : shown
}

export function parseCell (spec: ColumnSpec, cell: string, file: string, line: number): RawValue {
  switch (spec.kind) {
    case 'numeric': {
      const t = cell.trim()
      if (t === '') throw new BadValueError(`column '${spec.name}': empty value, a number is required`, file, line)
      if (!NUMBER_RE.test(t)) throw new BadValueError(`column '${spec.name}': ${show(cell)} is not a number`, file, line)
      const v = Number(t)
      if (!Number.isFinite(v)) throw new BadValueError(`column '${spec.name}': ${show(cell)} is not a finite number`, file, line)
      if (spec.integer === true && !Number.isInteger(v)) throw new BadValueError(`column '${spec.name}': ${v} is not a whole number`, file, line)
      if (spec.bounds !== undefined && (v < spec.bounds.min || v > spec.bounds.max)) {
        throw new BadValueError(`column '${spec.name}': ${v} is outside the declared bounds [${spec.bounds.min}, ${spec.bounds.max}]`, file, line)
      }
      return v
    }
    case 'categorical':
      if (!spec.categories!.includes(cell)) throw new BadValueError(`column '${spec.name}': unknown category ${show(cell)} (declared: ${listed(spec.categories!)})`, file, line)
      return cell
    case 'label':
      if (!spec.categories!.includes(cell)) throw new UnknownLabelError(`label ${show(cell)} in column '${spec.name}' is not a declared class (${listed(spec.categories!)})`, file, line)
      return cell
    case 'site':
      if (cell.trim() === '') throw new BadValueError(`column '${spec.name}': empty site value`, file, line)
      return cell
    case 'text':
    case 'id':
      return cell
    default: {
      const never: never = spec.kind
      throw new BadValueError(`column '${spec.name}': unknown kind ${String(never)}`, file, line)
    }
  }
}
