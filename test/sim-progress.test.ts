import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { createProgress } from '../sim/progress.ts'

/** A real writable stream that keeps what it is given, posing as a terminal or not. */
function capture (isTTY: boolean, columns?: number): Writable & { text: () => string, isTTY: boolean, columns?: number } {
  const chunks: string[] = []
  const w = new Writable({ write (chunk: Buffer, _enc, cb) { chunks.push(chunk.toString('utf8')); cb() } }) as Writable & { text: () => string, isTTY: boolean, columns?: number }
  w.isTTY = isTTY
  if (columns !== undefined) w.columns = columns
  w.text = () => chunks.join('')
  return w
}

const CLEAR = '\r\x1b[2K'

describe('progress', () => {
  it('writes one line per round when not on a terminal, and ignores within-round updates', () => {
    const out = capture(false)
    const p = createProgress({ width: 10 }, { stream: out })
    p.start('moe', 4)
    p.sites(1, 1, 3)
    p.round({ round: 1, accuracy: 0.5, loss: 1.23456, bytesSent: 1_500_000, durationS: 2.04, participants: 3 })
    p.round({ round: 2, accuracy: 0.755 })
    p.done()
    p.start('fedavgDense', 2)
    p.round({ round: 1 })
    p.done()
    expect(out.text()).toBe([
      'moe [###.......] round 1/4 · acc 50.0% · loss 1.235 · 1.5 MB · 2.0 s · 3 sites',
      'moe [#####.....] round 2/4 · acc 75.5%',
      'fedavgDense [#####.....] round 1/2',
      ''
    ].join('\n'))
  })

  it('redraws one line in place on a terminal, also while sites report, and ends each bar with a newline', () => {
    const out = capture(true)
    const p = createProgress({ width: 8 }, { stream: out })
    p.start('moe', 2)
    p.sites(1, 1, 2)
    p.round({ round: 1, accuracy: 0.9 })
    p.sites(2, 2, 2)
    p.round({ round: 2, accuracy: 0.95 })
    p.done()
    expect(out.text()).toBe(
      CLEAR + 'moe [........] 0/2' +
      CLEAR + 'moe [##......] round 1/2 · 1/2 sites' +
      CLEAR + 'moe [####....] round 1/2 · acc 90.0%' +
      CLEAR + 'moe [########] round 2/2 · 2/2 sites · acc 90.0%' +
      CLEAR + 'moe [########] round 2/2 · acc 95.0%' +
      '\n')
    expect(out.text().split('\n')).toHaveLength(2)
  })

  it('cuts lines to the terminal width', () => {
    const out = capture(true, 20)
    const p = createProgress({ width: 8 }, { stream: out })
    p.start('moe', 2)
    p.round({ round: 1, accuracy: 0.9, loss: 0.1 })
    const lines = out.text().split(CLEAR).filter(l => l !== '')
    expect(lines.map(l => l.length)).toEqual([18, 19])
  })
})
