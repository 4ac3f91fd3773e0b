/**
 * The topology's JSON Schema, generated from the zod schema so the two never
 * disagree. Editors use the committed copy (sim/topology.schema.json) through
 * a topology's "$schema" field; a test checks that the copy is current.
 *
 * Regenerate: node --import tsx sim/topology-schema.ts
 */
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { z } from 'zod'
import { Topology } from './topology.ts'

export const TOPOLOGY_SCHEMA_PATH = fileURLToPath(new URL('./topology.schema.json', import.meta.url))

/** The schema of what a user writes (defaults make fields optional). */
export function topologyJsonSchema (): Record<string, unknown> {
  const schema = z.toJSONSchema(Topology, { io: 'input', target: 'draft-2020-12' }) as Record<string, unknown>
  return {
    ...schema,
    $id: 'https://forgemesh.dev/schemas/topology.schema.json',
    title: 'forgemesh simulator topology',
    description: 'Sites, links and faults of a simulated federation (docs/simulator.md).'
  }
}

/** The exact text committed: 2-space JSON and a final newline. */
export function topologyJsonSchemaText (): string {
  return JSON.stringify(topologyJsonSchema(), null, 2) + '\n'
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(TOPOLOGY_SCHEMA_PATH, topologyJsonSchemaText())
  process.stdout.write(`wrote ${TOPOLOGY_SCHEMA_PATH}\n`)
}
