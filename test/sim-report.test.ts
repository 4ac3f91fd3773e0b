/**
 * report.json schema and report.html. The page is rendered in a real headless
 * Chromium (Debian's `chromium` package; `.ci/run` installs it) with every
 * network request refused, so "self-contained" is tested, not assumed.
 */
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { renderReportHtml } from '../sim/report/html.ts'
import { METHODS, REPORT_SCHEMA, parseReport, quantile, withoutTimings, type Report, type RoundRecord } from '../sim/report/schema.ts'

const CHROMIUM = '/usr/bin/chromium'
const OUT = fileURLToPath(new URL('../out/', import.meta.url))

/** A deterministic three-site report with every method and DP on. */
function sampleReport (options: { dp?: boolean, wall?: number } = {}): Report {
  const sites = ['alpha', 'bravo', 'charlie']
  const dp = options.dp ?? true
  const rounds = (method: string, n: number, acc: (r: number) => number, perLink: number): RoundRecord[] =>
    Array.from({ length: n }, (_, r) => {
      const links = perLink === 0 ? [] : sites.flatMap((a, i) => sites.filter(b => b !== a).map((b, j) => ({ from: a, to: b, bytes: perLink * (1 + i) + 1000 * j })))
      return {
        round: r + 1,
        accuracy: acc(r + 1),
        loss: 2.3 * (1 - acc(r + 1)),
        bytesPerLink: links,
        bytesSent: links.reduce((s, l) => s + l.bytes, 0),
        durationS: (options.wall ?? 1) * (0.5 + (r % 4) * 0.1 + (method === 'fedavgDense' ? 0.3 : 0)),
        participants: method === 'centralized' ? [] : sites,
        epsSpent: dp && method === 'moe' ? Object.fromEntries(sites.map((s, i) => [s, 0.3 * (r + 1) * (1 + i * 0.2)])) : {},
        ...(method === 'localOnly' ? { perSite: Object.fromEntries(sites.map(s => [s, { accuracy: 0.3, loss: 1.9 }])) } : {})
      }
    })
  const methods = {
    moe: { rounds: rounds('moe', 20, r => 0.97 - 0.6 * Math.exp(-r / 3), 400_000) },
    localOnly: { rounds: rounds('localOnly', 20, () => 0.3, 0) },
    fedavgDense: { rounds: rounds('fedavgDense', 20, r => 0.9 - 0.6 * Math.exp(-r / 5), 900_000) },
    centralized: { rounds: rounds('centralized', 20, r => 0.985 - 0.5 * Math.exp(-r / 2), 0) }
  }
  const summary = (m: keyof typeof methods): Report['summary']['methods']['moe'] => {
    const rs = methods[m].rounds
    return { accuracy: rs[rs.length - 1]!.accuracy, bytesSent: rs.reduce((s, r) => s + r.bytesSent, 0), rounds: rs.length, wallSeconds: rs.reduce((s, r) => s + r.durationS, 0) }
  }
  return {
    schema: REPORT_SCHEMA,
    topology: { name: 'three-sites', seed: 1, sites, transport: 'tcp', execution: 'process' },
    methods,
    summary: {
      methods: {
        moe: summary('moe'),
        localOnly: { ...summary('localOnly'), perSite: Object.fromEntries(sites.map(s => [s, { accuracy: 0.3, bytesSent: 0, rounds: 20, wallSeconds: 3 }])) },
        fedavgDense: summary('fedavgDense'),
        centralized: summary('centralized')
      }
    },
    sites: sites.map((name, i) => ({ name, peakRssBytes: (200 + i) * 1e6 * (options.wall ?? 1), peakRssSource: 'measured' as const, backend: 'wasm', events: i === 2 ? [{ round: 5, kind: 'crash' as const }, { round: 7, kind: 'restart' as const }] : [] })),
    run: { startedAt: '2026-01-01T00:00:00.000Z', wallSeconds: 95 * (options.wall ?? 1), node: 'v20.20.0', platform: 'linux', cpus: 2 }
  }
}

describe('report.json schema', () => {
  it('accepts a complete report and names the bad field of a broken one', () => {
    const good = sampleReport()
    expect(parseReport(JSON.parse(JSON.stringify(good)))).toEqual(good)
    const bad = JSON.parse(JSON.stringify(good)) as { methods: { moe: { rounds: Array<{ accuracy: number }> } } }
    bad.methods.moe.rounds[3]!.accuracy = 1.5
    expect(() => parseReport(bad, 'out/report.json')).toThrow(expect.objectContaining({
      name: 'ReportError',
      message: 'out/report.json: invalid report:\n  methods.moe.rounds[3].accuracy: expected a number ≤ 1, got 1.5'
    }))
  })

  it('compares runs with timings aside', () => {
    const a = sampleReport({ wall: 1 })
    const b = sampleReport({ wall: 2.5 })
    expect(a).not.toEqual(b)
    expect(withoutTimings(a)).toEqual(withoutTimings(b))
    const c = sampleReport({ wall: 1 })
    c.methods.moe.rounds[0]!.accuracy = 0.5
    expect(withoutTimings(c)).not.toEqual(withoutTimings(a))
  })

  it('quantiles interpolate between order statistics', () => {
    expect(quantile([3, 1, 2, 4], 0.5)).toBe(2.5)
    expect(quantile([1, 2, 3, 4, 5], 0.95)).toBeCloseTo(4.8, 12)
    expect(quantile([], 0.5)).toBeNaN()
  })
})

describe('report.html', () => {
  it('is one self-contained file: no scripts, no external references', () => {
    const html = renderReportHtml(sampleReport())
    expect(html).not.toMatch(/<script|<link|<img|<iframe|@import|url\(/i)
    expect(html).not.toMatch(/\s(src|href)=/i)
    // The only URL is the SVG namespace, which browsers never fetch.
    expect(html.match(/https?:\/\/[^"\s]+/g)?.every(u => u === 'http://www.w3.org/2000/svg')).toBe(true)
    expect(renderReportHtml(sampleReport())).toBe(html)
  })

  it('escapes text from the topology', () => {
    const r = sampleReport()
    r.topology.name = '<b>x</b>'
    expect(renderReportHtml(r)).toContain('forgemesh simulation: &lt;b&gt;x&lt;/b&gt;')
  })
})

describe('report.html in headless Chromium', () => {
  let browser: Browser
  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get update && apt-get install -y chromium`)
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      // Playwright gives every launch a fresh, empty user-data-dir.
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
    })
  })
  afterAll(async () => { await browser?.close() })

  async function render (report: Report, screenshot?: string): Promise<{ errors: string[], requests: string[], page: import('playwright-core').Page }> {
    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } })
    const errors: string[] = []
    const requests: string[] = []
    page.on('console', m => { if (m.type() === 'error' || m.type() === 'warning') errors.push(m.text()) })
    page.on('pageerror', e => { errors.push(e.message) })
    await page.route('**/*', async route => { requests.push(route.request().url()); await route.abort() })
    await page.setContent(renderReportHtml(report), { waitUntil: 'load' })
    if (screenshot !== undefined) {
      await mkdir(OUT, { recursive: true })
      await page.screenshot({ path: `${OUT}${screenshot}`, fullPage: true })
    }
    return { errors, requests, page }
  }

  it('renders all four plots with the right number of series, no console errors and no requests', async () => {
    const { errors, requests, page } = await render(sampleReport(), 'sim-report.png')
    expect(errors).toEqual([])
    expect(requests).toEqual([])
    expect(await page.locator('svg[data-plot]').evaluateAll(els => els.map(e => e.getAttribute('data-plot')))).toEqual(['accuracy', 'round-latency', 'epsilon', 'bytes-per-link'])
    expect(await page.locator('svg[data-plot="accuracy"] path[data-series]').evaluateAll(els => els.map(e => e.getAttribute('data-series'))))
      .toEqual(['MoE (forgemesh)', 'local only (mean)', 'dense FedAvg', 'centralized'])
    expect(await page.locator('svg[data-plot="bytes-per-link"] rect[data-cell]').count()).toBe(9)
    expect(await page.locator('svg[data-plot="round-latency"] rect[data-bar]').count()).toBe(METHODS.length * 2)
    expect(await page.locator('svg[data-plot="epsilon"] path[data-series]').count()).toBe(3)
    // Laid out for real: every plot has a visible box.
    for (const box of await page.locator('svg[data-plot]').evaluateAll(els => els.map(e => ({ width: e.getBoundingClientRect().width, height: e.getBoundingClientRect().height })))) {
      expect(box.width).toBeGreaterThan(200)
      expect(box.height).toBeGreaterThan(70)
    }
    await page.close()
  })

  it('says so when a run spent no privacy budget', async () => {
    const { errors, page } = await render(sampleReport({ dp: false }))
    expect(errors).toEqual([])
    expect(await page.locator('svg[data-plot="epsilon"] path[data-series]').count()).toBe(0)
    expect(await page.locator('svg[data-plot="epsilon"] [data-empty]').textContent()).toBe('No differential privacy in this run: nothing was charged.')
    await page.close()
  })
})
