/**
 * Small inline-SVG charts for the report page: a line chart, a heatmap and a
 * grouped bar chart. No scripts and no fonts beyond the system's, so the page
 * stays one self-contained file. Every mark carries a data- attribute naming
 * what it shows, so tests (and curious readers) can find it.
 */

export const escapeXml = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;')

/** Fixed-precision numbers keep the markup identical run to run. */
const n2 = (x: number): string => (Math.round(x * 100) / 100).toString()

/** Tick values at 1, 2 or 5 × 10^k covering [lo, hi]. */
export function niceTicks (lo: number, hi: number, target = 5): number[] {
  if (!(hi > lo)) hi = lo + 1
  const raw = (hi - lo) / target
  const mag = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => s >= raw)!
  const ticks: number[] = []
  const last = Math.ceil(hi / step - 1e-9) * step
  for (let t = Math.floor(lo / step + 1e-9) * step; t <= last + step * 1e-9; t += step) ticks.push(Number((Math.round(t / step) * step).toPrecision(12)))
  return ticks
}

/** Short human numbers for axes: 1.5k, 2M, 0.25. */
export function shortNumber (x: number): string {
  const a = Math.abs(x)
  if (a >= 1e9) return `${n2(x / 1e9)}G`
  if (a >= 1e6) return `${n2(x / 1e6)}M`
  if (a >= 1e3) return `${n2(x / 1e3)}k`
  return n2(x)
}

export interface Series { name: string, color: string, points: Array<[number, number]> }

interface Frame { width: number, height: number, left: number, right: number, top: number, bottom: number }
const FRAME: Frame = { width: 640, height: 300, left: 56, right: 150, top: 28, bottom: 44 }

function axes (f: Frame, xs: number[], ys: number[], sx: (x: number) => number, sy: (y: number) => number, xLabel: string, yLabel: string, yFormat: (y: number) => string): string {
  const x0 = f.left
  const x1 = f.width - f.right
  const y0 = f.height - f.bottom
  const y1 = f.top
  const parts: string[] = [`<g class="axes" stroke="#999" stroke-width="1">`]
  for (const y of ys) parts.push(`<line x1="${x0}" x2="${x1}" y1="${n2(sy(y))}" y2="${n2(sy(y))}" stroke="#e5e5e5"/>`)
  parts.push(`<line x1="${x0}" x2="${x1}" y1="${y0}" y2="${y0}"/><line x1="${x0}" x2="${x0}" y1="${y0}" y2="${y1}"/></g>`)
  parts.push('<g class="ticks" font-size="11" fill="#444">')
  for (const x of xs) parts.push(`<text x="${n2(sx(x))}" y="${y0 + 16}" text-anchor="middle">${escapeXml(shortNumber(x))}</text>`)
  for (const y of ys) parts.push(`<text x="${x0 - 6}" y="${n2(sy(y) + 4)}" text-anchor="end">${escapeXml(yFormat(y))}</text>`)
  parts.push('</g>')
  parts.push(`<text x="${(x0 + x1) / 2}" y="${f.height - 8}" text-anchor="middle" font-size="12">${escapeXml(xLabel)}</text>`)
  parts.push(`<text transform="translate(14 ${(y0 + y1) / 2}) rotate(-90)" text-anchor="middle" font-size="12">${escapeXml(yLabel)}</text>`)
  return parts.join('')
}

function legend (f: Frame, all: Array<{ name: string, color: string }>): string {
  const x = f.width - f.right + 14
  // As many entries as fit beside the plot; the rest are counted.
  const room = Math.floor((f.height - f.top - f.bottom) / 18)
  const items = all.length <= room ? all : [...all.slice(0, room - 1), { name: `+${all.length - room + 1} more`, color: 'none' }]
  return '<g class="legend" font-size="12">' + items.map((it, i) =>
    `<rect x="${x}" y="${f.top + i * 18}" width="12" height="12" fill="${it.color}"/><text x="${x + 18}" y="${f.top + i * 18 + 10}">${escapeXml(it.name)}</text>`
  ).join('') + '</g>'
}

function open (id: string, title: string, f: Frame): string {
  return `<svg data-plot="${escapeXml(id)}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${f.width} ${f.height}" width="${f.width}" height="${f.height}" role="img" aria-label="${escapeXml(title)}">` +
    `<text x="${f.left}" y="16" font-size="14" font-weight="600">${escapeXml(title)}</text>`
}

function empty (id: string, title: string, message: string): string {
  const f = { ...FRAME, height: 80 }
  return open(id, title, f) + `<text data-empty="true" x="${f.left}" y="50" font-size="12" fill="#666">${escapeXml(message)}</text></svg>`
}

export interface LineChartInit {
  id: string
  title: string
  xLabel: string
  yLabel: string
  series: Series[]
  yMin?: number
  yMax?: number
  yFormat?: (y: number) => string
  /** Only whole numbers on the x axis (rounds). */
  integerX?: boolean
  emptyMessage?: string
}

export function lineChart (init: LineChartInit): string {
  const series = init.series.filter(s => s.points.length > 0)
  if (series.length === 0) return empty(init.id, init.title, init.emptyMessage ?? 'no data')
  const f = FRAME
  const all = series.flatMap(s => s.points)
  const xLo = Math.min(...all.map(p => p[0]))
  const xHi = Math.max(...all.map(p => p[0]))
  const yLo = init.yMin ?? Math.min(0, ...all.map(p => p[1]))
  const yHi = init.yMax ?? Math.max(...all.map(p => p[1]), yLo + 1e-9)
  const xs = niceTicks(xLo, xHi === xLo ? xLo + 1 : xHi, 6).filter(x => init.integerX !== true || Number.isInteger(x))
  const ys = niceTicks(yLo, yHi)
  const xa = Math.min(xLo, xs[0]!)
  const xb = Math.max(xHi, xs[xs.length - 1]!)
  const ya = Math.min(yLo, ys[0]!)
  const yb = Math.max(yHi, ys[ys.length - 1]!)
  const sx = (x: number): number => f.left + (x - xa) / (xb - xa || 1) * (f.width - f.left - f.right)
  const sy = (y: number): number => f.height - f.bottom - (y - ya) / (yb - ya || 1) * (f.height - f.top - f.bottom)
  const lines = series.map(s => {
    const d = s.points.map((p, i) => `${i === 0 ? 'M' : 'L'}${n2(sx(p[0]))} ${n2(sy(p[1]))}`).join(' ')
    const dots = s.points.length <= 60 ? s.points.map(p => `<circle cx="${n2(sx(p[0]))}" cy="${n2(sy(p[1]))}" r="2.5" fill="${s.color}"/>`).join('') : ''
    return `<g data-series-group="${escapeXml(s.name)}"><path data-series="${escapeXml(s.name)}" d="${d}" fill="none" stroke="${s.color}" stroke-width="2"/>${dots}</g>`
  })
  return open(init.id, init.title, f) + axes(f, xs, ys, sx, sy, init.xLabel, init.yLabel, init.yFormat ?? shortNumber) + lines.join('') + legend(f, series) + '</svg>'
}

export interface HeatmapInit {
  id: string
  title: string
  /** Row and column labels (rows send, columns receive). */
  labels: string[]
  /** values[row][col]; null = no link. */
  values: Array<Array<number | null>>
  format: (v: number) => string
  emptyMessage?: string
}

/** White to deep blue, linear in the value. */
function ramp (t: number): string {
  const a = [247, 251, 255]
  const b = [8, 48, 107]
  const c = a.map((v, i) => Math.round(v + (b[i]! - v) * Math.max(0, Math.min(1, t))))
  return `rgb(${c[0]},${c[1]},${c[2]})`
}

export function heatmap (init: HeatmapInit): string {
  const n = init.labels.length
  const max = Math.max(0, ...init.values.flat().filter((v): v is number => v !== null))
  if (n === 0 || max === 0) return empty(init.id, init.title, init.emptyMessage ?? 'no traffic')
  const cell = Math.max(12, Math.min(56, Math.floor(440 / n)))
  const labelW = 90
  const f: Frame = { width: Math.max(labelW + n * cell + 40, 420), height: 50 + labelW + n * cell + 36, left: labelW, right: 0, top: 40 + labelW, bottom: 0 }
  const showValues = cell >= 40
  const parts: string[] = [open(init.id, init.title, f)]
  parts.push('<g font-size="11" fill="#333">')
  init.labels.forEach((l, i) => {
    parts.push(`<text x="${labelW - 6}" y="${f.top + i * cell + cell / 2 + 4}" text-anchor="end">${escapeXml(l)}</text>`)
    parts.push(`<text transform="translate(${labelW + i * cell + cell / 2 + 4} ${f.top - 6}) rotate(-60)">${escapeXml(l)}</text>`)
  })
  parts.push('</g>')
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < n; c++) {
      const v = init.values[r]?.[c] ?? null
      const x = labelW + c * cell
      const y = f.top + r * cell
      const label = `${init.labels[r]} → ${init.labels[c]}: ${v === null ? 'no link' : init.format(v)}`
      const fill = v === null ? '#f0f0f0' : ramp(v / max)
      parts.push(`<rect data-cell="${escapeXml(`${init.labels[r]}->${init.labels[c]}`)}" x="${x}" y="${y}" width="${cell - 1}" height="${cell - 1}" fill="${fill}"><title>${escapeXml(label)}</title></rect>`)
      if (showValues && v !== null) parts.push(`<text x="${x + cell / 2}" y="${y + cell / 2 + 4}" text-anchor="middle" font-size="10" fill="${v / max > 0.5 ? '#fff' : '#222'}">${escapeXml(init.format(v))}</text>`)
    }
  }
  parts.push(`<text x="${labelW}" y="${f.top + n * cell + 24}" font-size="11" fill="#555">rows send, columns receive; darkest: ${escapeXml(init.format(max))}</text>`)
  return parts.join('') + '</svg>'
}

export interface BarGroup { name: string, bars: Array<{ label: string, value: number, color: string }> }

export function barChart (init: { id: string, title: string, yLabel: string, groups: BarGroup[], yFormat?: (y: number) => string, emptyMessage?: string }): string {
  const groups = init.groups.filter(g => g.bars.length > 0)
  if (groups.length === 0) return empty(init.id, init.title, init.emptyMessage ?? 'no data')
  const f = FRAME
  const hi = Math.max(...groups.flatMap(g => g.bars.map(b => b.value)), 1e-9)
  const ys = niceTicks(0, hi)
  const yb = Math.max(hi, ys[ys.length - 1]!)
  const sy = (y: number): number => f.height - f.bottom - y / yb * (f.height - f.top - f.bottom)
  const plotW = f.width - f.left - f.right
  const groupW = plotW / groups.length
  const parts: string[] = [open(init.id, init.title, f), axes(f, [], ys, () => 0, sy, '', init.yLabel, init.yFormat ?? shortNumber)]
  groups.forEach((g, gi) => {
    const barW = Math.min(40, (groupW - 16) / g.bars.length)
    const x0 = f.left + gi * groupW + (groupW - barW * g.bars.length) / 2
    g.bars.forEach((b, bi) => {
      const y = sy(b.value)
      parts.push(`<rect data-bar="${escapeXml(`${g.name} ${b.label}`)}" x="${n2(x0 + bi * barW)}" y="${n2(y)}" width="${n2(barW - 2)}" height="${n2(f.height - f.bottom - y)}" fill="${b.color}"><title>${escapeXml(`${g.name} ${b.label}: ${(init.yFormat ?? shortNumber)(b.value)}`)}</title></rect>`)
    })
    parts.push(`<text x="${n2(f.left + (gi + 0.5) * groupW)}" y="${f.height - f.bottom + 16}" text-anchor="middle" font-size="12">${escapeXml(g.name)}</text>`)
  })
  const seen = new Map<string, string>()
  for (const g of groups) for (const b of g.bars) if (!seen.has(b.label)) seen.set(b.label, b.color)
  parts.push(legend(f, [...seen].map(([name, color]) => ({ name, color }))))
  return parts.join('') + '</svg>'
}
