/**
 * A `forgemesh node start` child process for the operations tests: its JSON
 * log lines are parsed as they arrive, and tests wait on a logged event or on
 * a condition, each with a deadline (never a sleep).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { CLI } from './cli.ts'

export interface LogLine { level: string, ns: string, event: string, [field: string]: unknown }

export class NodeProcess {
  readonly lines: LogLine[] = []
  readonly stderr: string[] = []
  private readonly child: ChildProcess
  private readonly waiters = new Set<() => void>()
  readonly exited: Promise<number | null>

  constructor (configFile: string, extraArgs: string[] = []) {
    this.child = spawn(process.execPath, [CLI, 'node', 'start', '--config', configFile, '--json', ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] })
    let buf = ''
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buf += chunk
      let nl: number
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        try {
          this.lines.push(JSON.parse(line) as LogLine)
        } catch {
          this.stderr.push(`(stdout, not JSON) ${line}`)
        }
      }
      this.notify()
    })
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { this.stderr.push(chunk); this.notify() })
    this.exited = new Promise(resolve => { this.child.once('exit', (code) => { this.notify(); resolve(code) }) })
  }

  private notify (): void {
    for (const w of [...this.waiters]) w()
  }

  get exitCode (): number | null { return this.child.exitCode }

  /** Resolves with the first log line matching, failing after `ms` or if the process exits first. */
  async waitFor (pred: (l: LogLine) => boolean, what: string, ms = 30_000): Promise<LogLine> {
    return await new Promise((resolve, reject) => {
      const check = (): void => {
        const hit = this.lines.find(pred)
        if (hit !== undefined) { done(); resolve(hit); return }
        if (this.child.exitCode !== null || this.child.signalCode !== null) { done(); reject(new Error(`node exited (${String(this.child.exitCode ?? this.child.signalCode)}) before ${what}\n${this.tail()}`)) }
      }
      const timer = setTimeout(() => { done(); reject(new Error(`no ${what} within ${ms} ms\n${this.tail()}`)) }, ms)
      const done = (): void => { clearTimeout(timer); this.waiters.delete(check) }
      this.waiters.add(check)
      check()
    })
  }

  async event (event: string, ms?: number): Promise<LogLine> {
    return await this.waitFor(l => l.event === event, `'${event}'`, ms)
  }

  signal (sig: NodeJS.Signals): void {
    this.child.kill(sig)
  }

  /** The last log lines and stderr, for a failure message. */
  tail (): string {
    return [...this.lines.slice(-15).map(l => JSON.stringify(l)), ...this.stderr.slice(-5)].join('\n')
  }
}

/** Polls `fn` until it returns a value that is not undefined, failing after `ms`. */
export async function until<T> (fn: () => Promise<T | undefined>, what: string, ms = 30_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + ms
  let last: unknown
  for (;;) {
    try {
      const v = await fn()
      if (v !== undefined) return v
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${ms} ms${last === undefined ? '' : ` (last error: ${String(last)})`}`)
    await new Promise(resolve => setTimeout(resolve, everyMs))
  }
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => { resolve(port) })
    })
  })
}
