/**
 * The site config's JSON Schema, generated from the zod schema so the two
 * never disagree. Editors use the committed copy (node/site-config.schema.json)
 * through a config's "$schema" field; a test checks that the copy is current.
 *
 * Regenerate: node --import tsx node/site-config-schema.ts
 */
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { z } from 'zod'
import { SiteConfig } from './config.ts'

export const SITE_CONFIG_SCHEMA_PATH = fileURLToPath(new URL('./site-config.schema.json', import.meta.url))

/** The schema of what an operator writes (defaults make fields optional). */
export function siteConfigJsonSchema (): Record<string, unknown> {
  const schema = z.toJSONSchema(SiteConfig, { io: 'input', target: 'draft-2020-12' }) as Record<string, unknown>
  return {
    ...schema,
    $id: 'https://forgemesh.dev/schemas/site-config.schema.json',
    title: 'forgemesh site config',
    description: 'One site of a federation: identity, federation key, members, rounds, learner, local API and logs (docs/operations.md).'
  }
}

/** The exact text committed: 2-space JSON and a final newline. */
export function siteConfigJsonSchemaText (): string {
  return JSON.stringify(siteConfigJsonSchema(), null, 2) + '\n'
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(SITE_CONFIG_SCHEMA_PATH, siteConfigJsonSchemaText())
  process.stdout.write(`wrote ${SITE_CONFIG_SCHEMA_PATH}\n`)
}
