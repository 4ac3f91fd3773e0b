/**
 * report.html: one self-contained page (inline CSS and SVG, no scripts, no
 * external fonts or images) from a report.json. Plots: accuracy against
 * round for every method, bytes per link as a heatmap, round latency p50/p95,
 * and epsilon spent over the rounds.
 */
import { METHODS, quantile, type Method, type Report } from './schema.ts'
import { barChart, escapeXml, heatmap, lineChart, shortNumber, type Series } from './svg.ts'

/** Okabe–Ito colours: distinguishable with the common colour-vision deficiencies. */
export const METHOD_COLORS: Record<Method, string> = { moe: '#0072B2', localOnly: '#E69F00', fedavgDense: '#009E73', centralized: '#CC79A7' }
export const METHOD_LABELS: Record<Method, string> = { moe: 'MoE (forgemesh)', localOnly: 'local only (mean)', fedavgDense: 'dense FedAvg', centralized: 'centralized' }
const SITE_COLORS = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#D55E00', '#56B4E9', '#F0E442', '#000000']

const pct = (x: number): string => `${(x * 100).toFixed(1)}%`
const bytes = (b: number): string => b >= 1e9 ? `${(b / 1e9).toFixed(2)} GB` : b >= 1e6 ? `${(b / 1e6).toFixed(2)} MB` : b >= 1e3 ? `${(b / 1e3).toFixed(1)} kB` : `${b} B`
const seconds = (s: number): string => s >= 100 ? `${s.toFixed(0)} s` : s >= 1 ? `${s.toFixed(2)} s` : `${(s * 1000).toFixed(0)} ms`

export function accuracyPlot (report: Report): string {
  const series: Series[] = METHODS.map(m => ({
    name: METHOD_LABELS[m],
    color: METHOD_COLORS[m],
    points: report.methods[m].rounds.map(r => [r.round, r.accuracy] as [number, number])
  }))
  return lineChart({ id: 'accuracy', title: 'Test accuracy by round', xLabel: 'round', yLabel: 'accuracy', series, integerX: true, yMin: 0, yMax: 1, yFormat: y => `${Math.round(y * 100)}%` })
}

export function bytesHeatmap (report: Report, method: Method = 'moe'): string {
  const sites = report.topology.sites
  const index = new Map(sites.map((s, i) => [s, i]))
  const values: Array<Array<number | null>> = sites.map(() => sites.map(() => null))
  for (const r of report.methods[method].rounds) {
    for (const l of r.bytesPerLink) {
      const i = index.get(l.from)
      const j = index.get(l.to)
      if (i === undefined || j === undefined) continue
      values[i]![j] = (values[i]![j] ?? 0) + l.bytes
    }
  }
  return heatmap({ id: 'bytes-per-link', title: `Bytes per link, ${METHOD_LABELS[method]}`, labels: sites, values, format: bytes })
}

export function latencyPlot (report: Report): string {
  const groups = METHODS.filter(m => report.methods[m].rounds.length > 0).map(m => {
    const d = report.methods[m].rounds.map(r => r.durationS)
    return {
      name: METHOD_LABELS[m],
      bars: [
        { label: 'p50', value: quantile(d, 0.5), color: '#56B4E9' },
        { label: 'p95', value: quantile(d, 0.95), color: '#0072B2' }
      ]
    }
  })
  return barChart({ id: 'round-latency', title: 'Round latency, p50 and p95', yLabel: 'seconds', groups, yFormat: y => shortNumber(y) })
}

export function epsilonPlot (report: Report, method: Method = 'moe'): string {
  const rounds = report.methods[method].rounds
  const sites = [...new Set(rounds.flatMap(r => Object.keys(r.epsSpent)))].sort()
  const series: Series[] = sites.map((s, i) => ({
    name: s,
    color: SITE_COLORS[i % SITE_COLORS.length]!,
    points: rounds.filter(r => r.epsSpent[s] !== undefined).map(r => [r.round, r.epsSpent[s]!] as [number, number])
  }))
  return lineChart({ id: 'epsilon', title: 'Privacy spent (ε) by round, per site', xLabel: 'round', yLabel: 'ε spent', series, integerX: true, yMin: 0, emptyMessage: 'No differential privacy in this run: nothing was charged.' })
}

function summaryTable (report: Report): string {
  const rows = METHODS.map(m => {
    const s = report.summary.methods[m]
    return `<tr data-method="${m}"><td><span class="dot" style="background:${METHOD_COLORS[m]}"></span>${escapeXml(METHOD_LABELS[m])}</td><td>${pct(s.accuracy)}</td><td>${bytes(s.bytesSent)}</td><td>${s.rounds}</td><td>${seconds(s.wallSeconds)}</td></tr>`
  })
  const per = Object.entries(report.summary.methods.localOnly.perSite).map(([site, s]) =>
    `<tr><td>${escapeXml(site)}</td><td>${pct(s.accuracy)}</td><td>${bytes(s.bytesSent)}</td><td>${s.rounds}</td><td>${seconds(s.wallSeconds)}</td></tr>`)
  return `<table><thead><tr><th>method</th><th>accuracy</th><th>bytes sent</th><th>rounds</th><th>wall time</th></tr></thead><tbody>${rows.join('')}</tbody></table>` +
    (per.length > 0 ? `<details><summary>local only, per site</summary><table><thead><tr><th>site</th><th>accuracy</th><th>bytes sent</th><th>rounds</th><th>wall time</th></tr></thead><tbody>${per.join('')}</tbody></table></details>` : '')
}

function sitesTable (report: Report): string {
  const rows = report.sites.map(s => {
    const events = s.events.map(e => `${e.kind}@${e.round}`).join(', ')
    return `<tr><td>${escapeXml(s.name)}</td><td>${escapeXml(s.backend)}</td><td>${s.peakRssBytes === null ? '–' : `${bytes(s.peakRssBytes)} <small>${s.peakRssSource}</small>`}</td><td>${escapeXml(events || '–')}</td></tr>`
  })
  return `<table><thead><tr><th>site</th><th>backend</th><th>peak RSS</th><th>events (kind@round)</th></tr></thead><tbody>${rows.join('')}</tbody></table>`
}

const CSS = `
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1000px;color:#1a1a1a;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#555;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border-bottom:1px solid #ddd;padding:4px 12px;text-align:right}th:first-child,td:first-child{text-align:left}
.dot{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:6px}
.plots{display:flex;flex-wrap:wrap;gap:16px}
figure{margin:0;border:1px solid #e3e3e3;border-radius:6px;padding:8px;background:#fff}
svg{max-width:100%;height:auto;font-family:inherit}
`

export function renderReportHtml (report: Report): string {
  const t = report.topology
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>forgemesh simulation: ${escapeXml(t.name)}</title>`,
    `<style>${CSS}</style></head><body>`,
    `<h1>forgemesh simulation: ${escapeXml(t.name)}</h1>`,
    `<p class="meta">${t.sites.length} sites over ${escapeXml(t.transport)} (${t.execution === 'process' ? 'one process per site' : 'all in one process'}) · seed ${t.seed} · started ${escapeXml(report.run.startedAt)} · ${seconds(report.run.wallSeconds)} on ${report.run.cpus} CPUs (${escapeXml(report.run.platform)}, Node ${escapeXml(report.run.node)})</p>`,
    '<h2>Summary</h2>',
    summaryTable(report),
    '<h2>Plots</h2><div class="plots">',
    `<figure>${accuracyPlot(report)}</figure>`,
    `<figure>${latencyPlot(report)}</figure>`,
    `<figure>${epsilonPlot(report)}</figure>`,
    `<figure>${bytesHeatmap(report)}</figure>`,
    '</div>',
    '<h2>Sites</h2>',
    sitesTable(report),
    `<p class="meta">Schema ${escapeXml(report.schema)}; the numbers behind every plot are in report.json.</p>`,
    '</body></html>',
    ''
  ].join('\n')
}
