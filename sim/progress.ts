/**
 * Progress output for a simulator run: one bar per method over its rounds.
 * On a terminal the bar is redrawn in place (also while sites report within
 * a round); anywhere else (CI logs, pipes) each finished round is one plain
 * line, so logs stay readable and diffable. The stream is injected: the CLI
 * passes process.stderr, keeping stdout for --json output.
 */

export interface ProgressStream {
  write: (chunk: string) => unknown
  /** True for a terminal: redraw in place. */
  isTTY?: boolean
  /** Terminal width; lines are cut to fit. */
  columns?: number
}

export interface RoundStats {
  round: number
  accuracy?: number
  loss?: number
  bytesSent?: number
  durationS?: number
  participants?: number
}

export interface Progress {
  /** Starts the bar of a method (e.g. 'moe', 'fedavgDense') with its number of rounds. */
  start: (method: string, totalRounds: number) => void
  /** Within a round: how many sites have reported (TTY only; plain output ignores it). */
  sites: (round: number, done: number, of: number) => void
  /** A round finished. */
  round: (stats: RoundStats) => void
  /** The method finished: ends the bar's line. */
  done: () => void
}

export interface ProgressInit {
  /** Characters in the bar; default 24. */
  width?: number
}

const ESC_CLEAR_LINE = '\r\x1b[2K'

/** Bytes for people: 1.2 MB, 514.6 kB (decimal units, as link speeds are quoted). */
export function fmtBytes (b: number): string {
  if (b >= 1e9) return `${(b / 1e9).toFixed(2)} GB`
  if (b >= 1e6) return `${(b / 1e6).toFixed(1)} MB`
  if (b >= 1e3) return `${(b / 1e3).toFixed(1)} kB`
  return `${b} B`
}

function statsText (s: RoundStats): string {
  const parts: string[] = []
  if (s.accuracy !== undefined) parts.push(`acc ${(s.accuracy * 100).toFixed(1)}%`)
  if (s.loss !== undefined) parts.push(`loss ${s.loss.toFixed(3)}`)
  if (s.bytesSent !== undefined) parts.push(fmtBytes(s.bytesSent))
  if (s.durationS !== undefined) parts.push(`${s.durationS.toFixed(1)} s`)
  if (s.participants !== undefined) parts.push(`${s.participants} sites`)
  return parts.join(' · ')
}

export function createProgress (init: ProgressInit, components: { stream: ProgressStream }): Progress {
  const width = init.width ?? 24
  const out = components.stream
  const tty = out.isTTY === true
  let method = ''
  let total = 0
  let completed = 0
  let last = ''
  let open = false

  const bar = (fraction: number): string => {
    const full = Math.round(Math.max(0, Math.min(1, fraction)) * width)
    return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`
  }
  const fit = (line: string): string => out.columns !== undefined && out.columns > 0 && line.length >= out.columns ? line.slice(0, out.columns - 1) : line
  const redraw = (text: string): void => {
    out.write(ESC_CLEAR_LINE + fit(text))
    open = true
  }

  return {
    start (m, rounds) {
      if (open) out.write('\n')
      open = false
      method = m
      total = rounds
      completed = 0
      last = ''
      if (tty) redraw(`${method} ${bar(0)} 0/${total}`)
    },
    sites (round, done, of) {
      if (!tty) return
      const fraction = (completed + (of > 0 ? done / of : 0)) / Math.max(1, total)
      redraw(`${method} ${bar(fraction)} round ${round}/${total} · ${done}/${of} sites${last === '' ? '' : ' · ' + last}`)
    },
    round (s) {
      completed = Math.min(total, completed + 1)
      last = statsText(s)
      const text = `${method} ${bar(completed / Math.max(1, total))} round ${s.round}/${total}${last === '' ? '' : ' · ' + last}`
      if (tty) redraw(text)
      else out.write(text + '\n')
    },
    done () {
      if (open) out.write('\n')
      open = false
    }
  }
}
