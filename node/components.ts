/**
 * Effectful implementations of the component seams declared in
 * coordinator/components.ts: the wall clock and a structured logger.
 */
import type { Clock, LogLevel, Logger } from '../coordinator/components.ts'

export const systemClock: Clock = { now: () => Date.now() }

const LEVEL_RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 }

export interface LogRecord {
  time: string
  level: LogLevel
  ns: string
  event: string
  [field: string]: unknown
}

export interface LoggerOptions {
  /** Lowest level written. Default 'info'. */
  level?: LogLevel
  /** 'json' writes one JSON object per line; 'pretty' a human line. Default: pretty on a TTY, else json. */
  format?: 'json' | 'pretty'
  /** Where lines go. Default: process.stderr, so stdout stays free for command output. */
  sink?: (line: string, record: LogRecord) => void
  clock?: Clock
}

export function isLogLevel (s: string): s is LogLevel {
  return s in LEVEL_RANK
}

/**
 * A namespaced structured logger: one line per event, with the fields that let
 * a reader follow a round across sites (`round`, `site`, `peer`).
 */
export function createLogger (namespace: string, options: LoggerOptions = {}): Logger {
  const minRank = LEVEL_RANK[options.level ?? 'info']
  const format = options.format ?? (process.stderr.isTTY ? 'pretty' : 'json')
  const clock = options.clock ?? systemClock
  const sink = options.sink ?? ((line: string) => { process.stderr.write(line + '\n') })

  const write = (level: LogLevel, event: string, fields?: Record<string, unknown>): void => {
    if (LEVEL_RANK[level] < minRank) return
    const record: LogRecord = { time: new Date(clock.now()).toISOString(), level, ns: namespace, event, ...fields }
    sink(format === 'json' ? JSON.stringify(record, jsonSafe) : prettyLine(record), record)
  }

  return {
    namespace,
    debug: (e, f) => { write('debug', e, f) },
    info: (e, f) => { write('info', e, f) },
    warn: (e, f) => { write('warn', e, f) },
    error: (e, f) => { write('error', e, f) },
    child: (suffix) => createLogger(`${namespace}:${suffix}`, options)
  }
}

function jsonSafe (_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString()
  if (value instanceof Error) return { name: value.name, message: value.message }
  return value
}

function prettyLine (r: LogRecord): string {
  const { time, level, ns, event, ...rest } = r
  const fields = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v, jsonSafe)}`).join(' ')
  return `${time.slice(11, 23)} ${level.toUpperCase().padEnd(5)} ${ns} ${event}${fields ? ' ' + fields : ''}`
}
