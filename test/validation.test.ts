import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { describeIssues, formatPath } from '../protocols/validation.ts'

const Schema = z.strictObject({
  sites: z.array(z.strictObject({
    name: z.string().min(1),
    role: z.enum(['trainer', 'observer']).default('trainer'),
    links: z.array(z.strictObject({ latencyMs: z.number().min(0) }))
  }))
})

function messages (input: unknown): string[] {
  const r = Schema.safeParse(input)
  if (r.success) return []
  return describeIssues(r.error.issues, input)
}

describe('zod issues as user messages', () => {
  it('names the field path and the bad value', () => {
    const input = { sites: [{ name: 'a', links: [] }, { name: 'b', links: [] }, { name: 'c', links: [{ latencyMs: -5 }] }] }
    expect(messages(input)).toEqual(['sites[2].links[0].latencyMs: expected a number ≥ 0, got -5'])
  })

  it('describes wrong types, enums and unknown fields', () => {
    const input = { sites: [{ name: 'a', role: 'boss', links: [{ latencyMs: 'fast' }], colour: 'red' }] }
    expect(messages(input)).toEqual([
      'sites[0].role: expected one of "trainer", "observer", got "boss"',
      'sites[0].links[0].latencyMs: expected a number, got "fast"',
      "sites[0]: unknown field 'colour'"
    ])
  })

  it('formats the root and nested paths', () => {
    expect(formatPath([])).toBe('(root)')
    expect(formatPath(['a', 0, 'b'])).toBe('a[0].b')
  })
})
