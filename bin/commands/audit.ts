/**
 * `forgemesh audit verify|list`: check a site's hash-chained audit log and
 * name every edited, removed, reordered or truncated record; print the log.
 * Thin: node/audit.ts does the work.
 */
import { loadSiteConfig } from '../../node/config.ts'
import { createAuditLog, verifyAuditLog, AUDIT_KINDS } from '../../node/audit.ts'
import { systemClock } from '../../node/components.ts'
import { openExistingStore } from '../../node/site-setup.ts'
import type { SiteStore } from '../../node/store.ts'
import { UsageError, helpText, parseArgs, type FlagSpec, type Parsed } from '../usage.ts'

const COMMON: FlagSpec = {
  config: { type: 'string', help: 'the site config (its storeDir holds the audit log)' },
  store: { type: 'string', help: 'the site store folder, instead of --config' },
  json: { type: 'boolean', help: 'print one JSON object' },
  help: { type: 'boolean', help: 'this text' }
}
const LIST_FLAGS: FlagSpec = {
  ...COMMON,
  kind: { type: 'string', help: `only records of this kind (${AUDIT_KINDS.join(', ')})` }
}

const USAGE = [
  'usage: forgemesh audit <verify|list> (--config FILE | --store DIR) [--json]',
  '',
  '  verify  check the hash chain; name every edited, removed, reordered or truncated record (exit 1 if any)',
  '  list    print the records in order',
  '',
  'The node holds its store while it runs: stop it first (SIGTERM).'
].join('\n')

async function withStore<T> (parsed: Parsed, fn: (store: SiteStore) => Promise<T>): Promise<T> {
  const { config, store: storeDir } = parsed.flags
  if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument '${parsed.positionals[0]!}'`)
  if ((config === undefined) === (storeDir === undefined)) throw new UsageError('give exactly one of --config FILE or --store DIR')
  const path = typeof storeDir === 'string' ? storeDir : (await loadSiteConfig(String(config))).storeDir
  const store = await openExistingStore(path)
  try {
    return await fn(store)
  } finally {
    await store.close()
  }
}

async function verify (argv: string[]): Promise<number> {
  const parsed = parseArgs(argv, COMMON)
  if (parsed.flags.help === true) {
    process.stdout.write(helpText('forgemesh audit verify (--config FILE | --store DIR) [--json]', 'Walks the whole audit chain. Exit 0 when every record is intact and in place; exit 1 naming each record that was edited, removed, reordered or cut off.', COMMON) + '\n')
    return 0
  }
  const v = await withStore(parsed, verifyAuditLog)
  if (parsed.flags.json === true) {
    process.stdout.write(JSON.stringify({ ok: v.ok, records: v.records, headHash: v.headHash, problems: v.problems }) + '\n')
  } else if (v.ok) {
    process.stdout.write(`audit log intact: ${v.records} records, head ${v.headHash}\n`)
  } else {
    process.stdout.write([`audit log BROKEN: ${v.problems.length} problem${v.problems.length === 1 ? '' : 's'} in ${v.records} records`, ...v.problems.map(p => `  record ${p.seq}: ${p.problem}: ${p.detail}`)].join('\n') + '\n')
  }
  return v.ok ? 0 : 1
}

async function list (argv: string[]): Promise<number> {
  const parsed = parseArgs(argv, LIST_FLAGS)
  if (parsed.flags.help === true) {
    process.stdout.write(helpText('forgemesh audit list (--config FILE | --store DIR) [--kind KIND] [--json]', 'Prints the audit records in order (one JSON object per line with --json). Does not verify: run audit verify for that.', LIST_FLAGS) + '\n')
    return 0
  }
  const kind = parsed.flags.kind
  if (kind !== undefined && !(AUDIT_KINDS as readonly unknown[]).includes(kind)) throw new UsageError(`--kind: expected one of ${AUDIT_KINDS.join(', ')}, got '${String(kind)}'`)
  await withStore(parsed, async store => {
    for await (const r of createAuditLog(store, { clock: systemClock }).records()) {
      if (kind !== undefined && r.kind !== kind) continue
      if (parsed.flags.json === true) process.stdout.write(JSON.stringify(r) + '\n')
      else process.stdout.write(`${String(r.seq).padStart(6)}  ${new Date(r.time).toISOString()}  ${r.kind.padEnd(18)} ${JSON.stringify(r.data)}\n`)
    }
  })
  return 0
}

export async function run (argv: string[]): Promise<number> {
  const [sub, ...rest] = argv
  if (sub === undefined || sub === '--help' || sub === '-h') {
    process.stdout.write(USAGE + '\n')
    return sub === undefined ? 2 : 0
  }
  if (sub === 'verify') return await verify(rest)
  if (sub === 'list') return await list(rest)
  throw new UsageError(`unknown subcommand 'audit ${sub}'. ${USAGE.split('\n')[0]!}`)
}
