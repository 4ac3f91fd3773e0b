/**
 * `forgemesh serve --model DIR`: serves an export over HTTP until SIGINT or
 * SIGTERM. POST /v1/predict { inputs: number[][], exclude?: string[] }
 * answers labels, probabilities and the experts used. Thin:
 * node/experts/{export,serve}.ts and node/api.ts do the work.
 */
import { readFile } from 'node:fs/promises'
import { createLogger } from '../../node/components.ts'
import { ConfigError } from '../../node/errors.ts'
import { loadExport } from '../../node/experts/export.ts'
import { createModelServer } from '../../node/experts/serve.ts'
import { parseBackendPreference, selectBackend } from '../../node/model/backend.ts'
import { UsageError, helpText, parseArgs, type FlagSpec } from '../usage.ts'

const FLAGS: FlagSpec = {
  model: { type: 'string', help: 'an export folder (model.safetensors + manifest.json, from forgemesh export)' },
  host: { type: 'string', help: 'address to bind (default 127.0.0.1; anything else needs --token-file)' },
  port: { type: 'number', help: 'port (default 8479; 0 picks a free one)' },
  'token-file': { type: 'string', help: 'file holding the bearer token every request must carry' },
  backend: { type: 'string', help: 'tfjs backend: auto (default), gpu, node, wasm, cpu' },
  'max-rows': { type: 'number', help: 'most input rows in one request (default 1024)' },
  json: { type: 'boolean', help: 'print the URL as one JSON line once listening' },
  help: { type: 'boolean', help: 'this text' }
}
const USAGE = 'forgemesh serve --model DIR [--host ADDR] [--port N] [--token-file FILE] [--json]'

export async function run (argv: string[]): Promise<number> {
  const { flags, positionals } = parseArgs(argv, FLAGS)
  if (flags.help === true) {
    process.stdout.write(helpText(USAGE, 'Serves an exported MoE: POST /v1/predict {"inputs": [[...], ...], "exclude": ["expert-id"]} answers each row\'s label, probabilities and the experts that produced it (id, owner, weight). Runs until SIGINT or SIGTERM.', FLAGS) + '\n')
    return 0
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]!}'`)
  const dir = flags.model as string | undefined
  if (dir === undefined) throw new UsageError('--model is required')
  const port = (flags.port as number | undefined) ?? 8479
  if (!(Number.isInteger(port) && port >= 0 && port <= 65535)) throw new UsageError(`--port must be 0..65535, got ${port}`)
  const maxRows = flags['max-rows'] as number | undefined
  if (maxRows !== undefined && !(Number.isInteger(maxRows) && maxRows >= 1)) throw new UsageError(`--max-rows must be a positive integer, got ${maxRows}`)
  let token: string | undefined
  if (flags['token-file'] !== undefined) {
    token = (await readFile(flags['token-file'] as string, 'utf8').catch(() => { throw new ConfigError(`cannot read the token file ${String(flags['token-file'])}`) })).trim()
  }
  const logger = createLogger('forgemesh:serve', { level: 'warn' })
  await selectBackend(parseBackendPreference((flags.backend as string | undefined) ?? 'auto'), logger)

  const { manifest, moe } = await loadExport(dir)
  const api = createModelServer(moe, {
    host: (flags.host as string | undefined) ?? '127.0.0.1',
    port,
    ...(token !== undefined ? { token } : {}),
    ...(maxRows !== undefined ? { maxRows } : {}),
    describe: { model: dir, specHash: manifest.specHash, createdAt: manifest.createdAt }
  }, { logger })
  await api.start()
  const experts = manifest.experts.map(e => e.id)
  if (flags.json === true) process.stdout.write(JSON.stringify({ ok: true, url: api.url(), predict: `${api.url()}/v1/predict`, experts }) + '\n')
  else process.stdout.write(`serving ${dir} at ${api.url()}/v1/predict (experts: ${experts.join(', ') || 'none'}); Ctrl-C stops\n`)

  await new Promise<void>(resolve => {
    const stop = (): void => { process.off('SIGINT', stop); process.off('SIGTERM', stop); resolve() }
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
  })
  await api.stop()
  moe.dispose()
  return 0
}
