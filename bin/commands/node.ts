/**
 * `forgemesh node start --config FILE`: runs a site until SIGTERM or SIGINT.
 * The first signal finishes or aborts the current round, stops the mesh and
 * the API, flushes and closes the store, and exits 0; a second one exits at
 * once with 1. Thin: node/service.ts composes the site.
 */
import { isLogLevel, systemClock } from '../../node/components.ts'
import { CONFIG_FILE_NAME, loadSiteConfig, type LoadedSiteConfig } from '../../node/config.ts'
import type { RuntimeCommit } from '../../node/service-runtime.ts'
import { createServiceLogger, startSiteService } from '../../node/service.ts'
import { createProgress } from '../../sim/progress.ts'
import { UsageError, helpText, parseArgs, type FlagSpec } from '../usage.ts'

const FLAGS: FlagSpec = {
  config: { type: 'string', help: `the site config (default ./${CONFIG_FILE_NAME})` },
  'log-level': { type: 'string', help: 'debug, info, warn or error (default: the config\'s log.level)' },
  json: { type: 'boolean', help: 'write JSON log lines even on a terminal' },
  help: { type: 'boolean', help: 'this text' }
}
const USAGE = 'forgemesh node start [--config FILE] [--log-level LEVEL] [--json]'

export async function run (argv: string[]): Promise<number> {
  const [sub, ...rest] = argv
  if (sub === undefined || sub === '--help' || sub === '-h') {
    process.stdout.write(`usage: ${USAGE}\n\n  start  run this site until it is stopped (SIGTERM or SIGINT)\n\nRun 'forgemesh node start --help' for the options.\n`)
    return sub === undefined ? 2 : 0
  }
  if (sub !== 'start') throw new UsageError(`unknown subcommand 'node ${sub}'. usage: ${USAGE}`)
  const { flags, positionals } = parseArgs(rest, FLAGS)
  if (flags.help === true) {
    process.stdout.write(helpText(USAGE, 'Runs the site: mesh, federated rounds, the local HTTP API (GET /status, GET /metrics, POST /v1/predict) and the audit log. Logs are JSON lines on stdout (readable lines on a terminal). SIGTERM or SIGINT stops it cleanly: the current round is finished or aborted, the store flushed, exit 0. Exit 2 on a bad config, 1 on a runtime failure.', FLAGS) + '\n')
    return 0
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]!}'`)
  const level = flags['log-level']
  if (level !== undefined && (typeof level !== 'string' || !isLogLevel(level))) throw new UsageError(`--log-level: expected debug, info, warn or error, got '${String(level)}'`)
  const config = await loadSiteConfig((flags.config as string | undefined) ?? CONFIG_FILE_NAME)
  const bar = flags.json === true ? undefined : terminalProgress(config)
  const logger = createServiceLogger(config, { level: level as string | undefined, json: flags.json === true, ...(bar === undefined ? {} : { sink: bar.log }) })

  const service = await startSiteService(config, { clock: systemClock, logger }, bar === undefined ? {} : { onCommit: bar.commit })
  let signals = 0
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++
    if (signals > 1) {
      logger.error('node.forced-exit', { signal, message: 'second signal while stopping: exiting without a clean stop' })
      process.exit(1)
    }
    void service.stop(`signal ${signal}`)
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
  const { code } = await service.stopped
  bar?.done()
  process.off('SIGTERM', onSignal)
  process.off('SIGINT', onSignal)
  return code
}

/**
 * On a terminal, a rounds bar under the log: each log line clears the bar,
 * prints, and redraws it, so the two never tear each other. Anywhere else
 * (a service manager, a pipe) there is no bar: the JSON lines say it all.
 */
function terminalProgress (config: LoadedSiteConfig): { log: (line: string) => void, commit: (c: RuntimeCommit) => void, done: () => void } | undefined {
  if (process.stdout.isTTY !== true) return undefined
  let last = ''
  const progress = createProgress({}, {
    stream: {
      isTTY: true,
      columns: process.stdout.columns,
      write: (chunk) => { last = chunk.endsWith('\n') ? '' : chunk.slice(chunk.lastIndexOf('\n') + 1); return process.stdout.write(chunk) }
    }
  })
  let started = false
  let previous = Date.now()
  return {
    log: (line) => { process.stdout.write(last === '' ? `${line}\n` : `\r\x1b[2K${line}\n${last}`) },
    commit: (c) => {
      if (!started) {
        progress.start(config.site, config.federation.rounds)
        // A resumed site starts part-way: redraw silently up to where it is.
        for (let r = 1; r < c.round; r++) progress.round({ round: r })
        started = true
      }
      const now = Date.now()
      progress.round({ round: c.round, bytesSent: c.bytesSent, participants: c.participants.length, durationS: (now - previous) / 1000 })
      previous = now
      if (c.round >= config.federation.rounds) progress.done()
    },
    done: () => { if (started) progress.done() }
  }
}
