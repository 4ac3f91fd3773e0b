/**
 * `forgemesh status`: asks a running node's local API (GET /status) and
 * prints peers, round, coordinator, experts, backend and eps. The node writes
 * its API URL to the config's runtimeFile when it starts.
 */
import { existsSync } from 'node:fs'
import { CONFIG_FILE_NAME, loadSiteConfig } from '../../node/config.ts'
import { fetchNodeStatus, readRuntimeFile, readTokenFile, type NodeStatus } from '../../node/service-files.ts'
import { UsageError, helpText, parseArgs, type FlagSpec } from '../usage.ts'

const FLAGS: FlagSpec = {
  config: { type: 'string', help: `the site config (default ./${CONFIG_FILE_NAME}); the node's API URL is read from its runtimeFile` },
  url: { type: 'string', help: 'the node\'s API URL, instead of --config' },
  'token-file': { type: 'string', help: 'bearer token file (default: the config\'s api.tokenFile)' },
  'timeout-ms': { type: 'number', help: 'give up after this long (default 5000)' },
  json: { type: 'boolean', help: 'print the status as one JSON object' },
  help: { type: 'boolean', help: 'this text' }
}
const USAGE = 'forgemesh status [--config FILE | --url URL] [--token-file FILE] [--json]'

export async function run (argv: string[]): Promise<number> {
  const { flags, positionals } = parseArgs(argv, FLAGS)
  if (flags.help === true) {
    process.stdout.write(helpText(USAGE, 'Shows a running node: its round, the round coordinator, connected members, experts, compute backend and the privacy budget spent. Exit 1 when no node answers.', FLAGS) + '\n')
    return 0
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]!}'`)
  if (flags.url !== undefined && flags.config !== undefined) throw new UsageError('give --config or --url, not both')
  let url = flags.url as string | undefined
  let tokenFile = flags['token-file'] as string | undefined
  if (url === undefined) {
    const configFile = (flags.config as string | undefined) ?? CONFIG_FILE_NAME
    if (flags.config === undefined && !existsSync(configFile)) throw new UsageError(`no ${CONFIG_FILE_NAME} here: give --config FILE or --url URL`)
    const config = await loadSiteConfig(configFile)
    url = (await readRuntimeFile(config.runtimeFile)).apiUrl
    tokenFile ??= config.api.tokenFile
  }
  const token = tokenFile === undefined ? undefined : await readTokenFile(tokenFile)
  const status = await fetchNodeStatus(url, { token, timeoutMs: (flags['timeout-ms'] as number | undefined) ?? 5000 })
  if (flags.json === true) process.stdout.write(JSON.stringify({ ok: true, status }) + '\n')
  else process.stdout.write(formatStatus(status) + '\n')
  return 0
}

function formatStatus (s: NodeStatus): string {
  const eps = s.privacy === null ? 'no budget set' : `${s.privacy.spent.epsilon.toPrecision(4)} spent, ${s.privacy.remaining.epsilon.toPrecision(4)} left (delta ${s.privacy.spent.delta} of ${s.privacy.spent.delta + s.privacy.remaining.delta})`
  const peers = s.peers.map(p => `    ${p.connected ? 'up  ' : 'down'} ${p.name ?? ''} ${p.peerId}`.replace(/ {2,}/g, m => m.length > 4 ? m : ' '))
  return [
    `site         ${s.site} (${s.state}, up ${s.uptimeS.toFixed(0)} s)`,
    `peer id      ${s.peerId}`,
    `round        ${s.round.committed} committed of ${s.round.target}${s.round.resumedFrom > 0 ? ` (resumed from ${s.round.resumedFrom})` : ''}`,
    `coordinator  ${s.coordinator ?? '(none elected)'}`,
    `peers        ${s.peers.filter(p => p.connected).length} of ${s.peers.length} connected`,
    ...peers,
    `experts      ${s.experts.length === 0 ? '(none yet)' : s.experts.join(', ')}`,
    `backend      ${s.backend}`,
    `eps          ${eps}`
  ].join('\n')
}
