/**
 * The schema file the `forgemesh data` commands take: the dataset schema
 * (node/data/schema.ts) with the site's dataset policy next to it,
 *   { "columns": [ ... ], "policy": { "columns": { "email": "drop" }, ... } }
 * size-checked before it is read and validated with zod.
 */
import { readFile, stat } from 'node:fs/promises'
import { DatasetSchemaError } from '../../errors.ts'
import { parseDatasetPolicy, parseDatasetSchema, checkPolicyAgainstSchema, type DatasetPolicySpec, type DatasetSchemaSpec } from '../schema.ts'

const MAX_SCHEMA_BYTES = 4 * 1024 * 1024

export interface SchemaFile {
  schema: DatasetSchemaSpec
  policy: DatasetPolicySpec
}

export async function readSchemaFile (file: string): Promise<SchemaFile> {
  let size: number
  try {
    size = (await stat(file)).size
  } catch (err) {
    throw new DatasetSchemaError(`${file}: cannot read the schema file (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err })
  }
  if (size > MAX_SCHEMA_BYTES) throw new DatasetSchemaError(`${file}: ${size} bytes is above the ${MAX_SCHEMA_BYTES}-byte limit for a schema file`)
  let json: unknown
  try {
    json = JSON.parse(await readFile(file, 'utf8'))
  } catch (err) {
    throw new DatasetSchemaError(`${file}: not valid JSON (${(err as Error).message})`, { cause: err })
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new DatasetSchemaError(`${file}: expected a JSON object with "columns" (and optionally "policy")`)
  const { policy, ...schema } = json as Record<string, unknown>
  try {
    const parsed = { schema: parseDatasetSchema(schema), policy: parseDatasetPolicy(policy ?? {}) }
    checkPolicyAgainstSchema(parsed.schema, parsed.policy)
    return parsed
  } catch (err) {
    if (err instanceof DatasetSchemaError) throw new DatasetSchemaError(`${file}: ${err.message}`, { cause: err })
    throw err
  }
}
