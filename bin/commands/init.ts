/**
 * `forgemesh init <dir>`: a new site folder with its key, a federation key
 * (new, or imported with --psk) and a config template. Thin: node/site-setup.ts
 * does the work.
 */
import { systemClock } from '../../node/components.ts'
import { initSite } from '../../node/site-setup.ts'
import { UsageError, helpText, parseArgs, type FlagSpec } from '../usage.ts'

const FLAGS: FlagSpec = {
  site: { type: 'string', help: 'the site\'s name (default: the folder\'s name)' },
  psk: { type: 'string', help: 'import this federation key file (from the member who created the federation) instead of generating one' },
  listen: { type: 'string', help: 'mesh listen multiaddrs, comma-separated (default /ip4/0.0.0.0/tcp/4100)' },
  'api-port': { type: 'number', help: 'port of the local HTTP API (default 7400; 0 picks a free one)' },
  json: { type: 'boolean', help: 'print the result as one JSON object' },
  help: { type: 'boolean', help: 'this text' }
}
const USAGE = 'forgemesh init <dir> [--site NAME] [--psk FILE] [--listen MA[,MA]] [--api-port N] [--json]'

export async function run (argv: string[]): Promise<number> {
  const { flags, positionals } = parseArgs(argv, FLAGS)
  if (flags.help === true) {
    process.stdout.write(helpText(USAGE, 'Creates a site: its Ed25519 key (identity.json, 0600), the federation key (federation.psk, 0600; new unless --psk imports one), a config template (forgemesh.json) and its store with the audit log\'s first record. Refuses a folder that already holds a site.', FLAGS) + '\n')
    return 0
  }
  if (positionals.length !== 1) throw new UsageError(`expected exactly one folder, got ${positionals.length}. usage: ${USAGE}`)
  const listen = typeof flags.listen === 'string' ? flags.listen.split(',').map(s => s.trim()).filter(s => s !== '') : undefined
  const r = await initSite({
    dir: positionals[0]!,
    ...(typeof flags.site === 'string' ? { site: flags.site } : {}),
    ...(typeof flags.psk === 'string' ? { pskFrom: flags.psk } : {}),
    ...(listen === undefined ? {} : { listen }),
    ...(typeof flags['api-port'] === 'number' ? { apiPort: flags['api-port'] } : {})
  }, { clock: systemClock })
  if (flags.json === true) {
    process.stdout.write(JSON.stringify({ ok: true, ...r }) + '\n')
    return 0
  }
  process.stdout.write([
    `site ${r.site} created in ${r.configFile.slice(0, -'/forgemesh.json'.length)}`,
    `  peer id      ${r.peerId}`,
    `  config       ${r.configFile}`,
    `  identity     ${r.identityFile} (0600; never share it)`,
    `  federation   ${r.pskFile} (0600; ${r.pskImported ? 'imported' : 'new: give a copy to every member, over a secure channel'})`,
    '',
    'Add this site to the other members\' mesh.members:',
    `  ${JSON.stringify(r.member)}`,
    ...(r.member.addresses.some(a => a.includes('/0.0.0.0/') || a.includes('/tcp/0/')) ? ['  (replace 0.0.0.0 with an address the others can reach, and port 0 with a fixed one)'] : []),
    '',
    `Then: forgemesh node start --config ${r.configFile}`
  ].join('\n') + '\n')
  return 0
}
