/**
 * Turns zod issues into messages a user can act on: the field path as they
 * wrote it, what was expected, and what they gave, e.g.
 * `sites[2].links[0].latencyMs: expected a number ≥ 0, got -5`.
 */
import type { z } from 'zod'

export function formatPath (path: ReadonlyArray<PropertyKey>): string {
  let out = ''
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`
    else out += out === '' ? String(key) : `.${String(key)}`
  }
  return out === '' ? '(root)' : out
}

function valueAt (input: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let v: unknown = input
  for (const key of path) {
    if (v === null || typeof v !== 'object') return undefined
    v = (v as Record<PropertyKey, unknown>)[key]
  }
  return v
}

function show (v: unknown): string {
  if (v === undefined) return 'nothing'
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? v.slice(0, 57) + '...' : v)
  if (Array.isArray(v)) return `an array of ${v.length}`
  if (v !== null && typeof v === 'object') return 'an object'
  return String(v)
}

const ARTICLE: Record<string, string> = { number: 'a number', string: 'a string', boolean: 'a boolean', object: 'an object', array: 'an array', int: 'an integer', bigint: 'an integer' }

/** One line per issue, in the order zod reports them. */
export function describeIssues (issues: ReadonlyArray<z.core.$ZodIssue>, input: unknown): string[] {
  return issues.map(issue => {
    const where = formatPath(issue.path)
    const got = show(valueAt(input, issue.path))
    switch (issue.code) {
      case 'invalid_type':
        return `${where}: expected ${ARTICLE[issue.expected] ?? issue.expected}, got ${got}`
      case 'too_small': {
        const bound = `${issue.inclusive === false ? '>' : '≥'} ${String(issue.minimum)}`
        const what = issue.origin === 'array' ? 'at least ' + String(issue.minimum) + ' items' : issue.origin === 'string' ? `a string of length ${bound}` : `a number ${bound}`
        return `${where}: expected ${what}, got ${got}`
      }
      case 'too_big': {
        const bound = `${issue.inclusive === false ? '<' : '≤'} ${String(issue.maximum)}`
        const what = issue.origin === 'array' ? 'at most ' + String(issue.maximum) + ' items' : issue.origin === 'string' ? `a string of length ${bound}` : `a number ${bound}`
        return `${where}: expected ${what}, got ${got}`
      }
      case 'invalid_value':
        return `${where}: expected one of ${issue.values.map(v => JSON.stringify(v)).join(', ')}, got ${got}`
      case 'unrecognized_keys':
        return `${where}: unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map(k => `'${k}'`).join(', ')}`
      default:
        return `${where}: ${issue.message}, got ${got}`
    }
  })
}
