/**
 * Shared argument parsing for every command: `--flag value`, `--flag=value`,
 * boolean `--flag`, and positionals. Unknown flags are usage errors (exit 2).
 */
import { ForgemeshError } from '../protocols/errors.ts'

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

/**
 * Error codes that mean "what you asked for or configured is wrong" (exit 2)
 * rather than "it failed while running" (exit 1). Codes, not classes, so a
 * new config-like error in any layer only needs its code listed here;
 * test/usage-exit.test.ts fails when a code naming CONFIG, SCHEMA, SPEC,
 * TOPOLOGY or USAGE is missing.
 */
export const BAD_INPUT_CODES: ReadonlySet<string> = new Set([
  'ERR_USAGE', 'ERR_CONFIG', 'ERR_API_CONFIG', 'ERR_INSECURE_MESH', 'ERR_PSK_FILE',
  'ERR_DATASET_SCHEMA', 'ERR_SYNTHETIC_SCHEMA', 'ERR_TOPOLOGY', 'ERR_MODEL_SPEC', 'ERR_PRIVACY_CONFIG',
  // A strategy or compression config that fails validation.
  'ERR_STRATEGY_CONFIG',
  // Artifacts or an export handed over for another model spec than the one named.
  'ERR_SPEC_MISMATCH'
])

export function exitCodeOf (err: unknown): number {
  if (err instanceof ForgemeshError && BAD_INPUT_CODES.has(err.code)) return 2
  return 1
}

export function formatError (err: unknown): { name: string, message: string } {
  if (err instanceof Error) return { name: err.name, message: err.message }
  return { name: 'Error', message: String(err) }
}
