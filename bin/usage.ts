/**
 * Shared argument parsing for every command: `--flag value`, `--flag=value`,
 * boolean `--flag`, and positionals. Unknown flags are usage errors (exit 2).
 */
import { ForgemeshError } from '../protocols/errors.ts'
import { ConfigError } from '../node/errors.ts'

export class UsageError extends ForgemeshError {
  override name = 'UsageError'
  override readonly code = 'ERR_USAGE'
}

export interface FlagSpec {
  [flag: string]: { type: 'string' | 'number' | 'boolean', help: string }
}

export interface Parsed {
  positionals: string[]
  flags: Record<string, string | number | boolean | undefined>
}

export function parseArgs (argv: string[], spec: FlagSpec): Parsed {
  const positionals: string[] = []
  const flags: Parsed['flags'] = {}
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (!arg.startsWith('--')) { positionals.push(arg); continue }
    const eq = arg.indexOf('=')
    const name = arg.slice(2, eq === -1 ? undefined : eq)
    const def = spec[name]
    if (def === undefined) throw new UsageError(`unknown option --${name}`)
    if (def.type === 'boolean') {
      if (eq !== -1) throw new UsageError(`--${name} takes no value`)
      flags[name] = true
      continue
    }
    const raw = eq === -1 ? argv[++i] : arg.slice(eq + 1)
    if (raw === undefined) throw new UsageError(`--${name} needs a value`)
    if (def.type === 'number') {
      const n = Number(raw)
      if (raw.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${name}: expected a number, got '${raw}'`)
      flags[name] = n
    } else {
      flags[name] = raw
    }
  }
  return { positionals, flags }
}

export function helpText (usage: string, summary: string, spec: FlagSpec): string {
  const width = Math.max(6, ...Object.keys(spec).map(n => n.length + 2))
  const opts = Object.entries(spec).map(([n, d]) => `  --${n.padEnd(width)} ${d.help}`)
  return [`usage: ${usage}`, '', summary, '', 'options:', ...opts].join('\n')
}

export function exitCodeOf (err: unknown): number {
  if (err instanceof UsageError || err instanceof ConfigError) return 2
  return 1
}

export function formatError (err: unknown): { name: string, message: string } {
  if (err instanceof Error) return { name: err.name, message: err.message }
  return { name: 'Error', message: String(err) }
}
