/**
 * One simulator run: the networked MoE over real sites on the shaped mesh
 * (each site in a child process of its own, or all inline), the three
 * baselines on a worker thread at the same time, then report.json,
 * report.html and a summary table.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { LogLevel, Logger } from '../coordinator/components.ts'
import type { RoundRecord as FederationRecord } from '../node/federation/run-common.ts'
import { runBaselinesInWorker, type BaselineOutcome, type BaselineResults } from './baselines.ts'
import { selectBackend } from '../node/model/backend.ts'
import { loadSimData } from './data.ts'
import { runNetworkedMoe, type MoeMethodResult } from './moe-method.ts'
import { fmtBytes, type Progress } from './progress.ts'
import { renderReportHtml } from './report/html.ts'
import { parseReport, REPORT_SCHEMA, type Report, type RoundRecord } from './report/schema.ts'
import type { Topology } from './topology.ts'

export interface RunOptions {
  /** Where report.json and report.html go (created). */
  outDir: string
  /** Rounds at which every method is scored; default: about ten evenly spaced, and the last. */
  evalRounds?: number[]
  progress?: Progress
  signal?: AbortSignal
  /** Log levels of the sites' child processes passed on (default warn and error). */
  siteLogLevels?: LogLevel[]
  /** Keep the sites' stores and keys (default: removed after the run). */
  keepWorkDir?: boolean
}

export interface RunOutcome {
  report: Report
  reportPath: string
  htmlPath: string
  /** The MoE as a member assembled it after the last round. */
  assembled: MoeMethodResult['assembled']
}

export function defaultEvalRounds (rounds: number): number[] {
  const step = Math.max(1, Math.ceil(rounds / 10))
  const out = new Set<number>()
  for (let r = step; r < rounds; r += step) out.add(r)
  out.add(rounds)
  return [...out].sort((a, b) => a - b)
}

export async function runSimulation (topology: Topology, options: RunOptions, components: { logger: Logger }): Promise<RunOutcome> {
  const started = new Date()
  const t0 = performance.now()
  const evalRounds = options.evalRounds ?? defaultEvalRounds(topology.federation.rounds)
  const work = await mkdtemp(join(tmpdir(), `forgemesh-sim-${topology.name}-`))
  try {
    // The observer (and, inline, every site) uses the first site's backend choice.
    const backend = await selectBackend(topology.sites[0]?.backend ?? 'auto', components.logger)
    const data = await loadSimData(topology, options.signal !== undefined ? { signal: options.signal } : {})
    const baselines = runBaselinesInWorker(topology, data, evalRounds, backend.name, options.signal)
    // Do not let a failure here go unhandled while the MoE runs.
    baselines.catch(() => {})
    const moe = await runNetworkedMoe(topology, data, {
      dir: work,
      evalRounds: new Set(evalRounds),
      ...(options.progress !== undefined ? { progress: options.progress } : {}),
      ...(options.signal !== undefined ? { signal: options.signal } : {}),
      ...(options.siteLogLevels !== undefined ? { siteLogLevels: options.siteLogLevels } : {})
    }, components)
    const base = await baselines
    const report = buildReport(topology, moe, base, { started, wallSeconds: (performance.now() - t0) / 1000, backend: backend.name, peakRssBytes: peakRssBytes() })
    await mkdir(options.outDir, { recursive: true })
    const reportPath = resolve(options.outDir, 'report.json')
    const htmlPath = resolve(options.outDir, 'report.html')
    await writeFile(reportPath, JSON.stringify(report, null, 2) + '\n')
    await writeFile(htmlPath, renderReportHtml(report))
    return { report, reportPath, htmlPath, assembled: moe.assembled }
  } finally {
    if (options.keepWorkDir !== true) await rm(work, { recursive: true, force: true })
  }
}

function buildReport (topology: Topology, moe: MoeMethodResult, base: BaselineResults, run: { started: Date, wallSeconds: number, backend: string, peakRssBytes: number }): Report {
  const siteNames = topology.sites.map(s => s.name)
  // The final expert publication follows the last commit: its bytes count with the last round.
  const moeRounds = moe.rounds.map((r, i) => i === moe.rounds.length - 1 ? withPublication(r, moe.publication) : r)
  const last = moeRounds.at(-1)
  // Baseline bytes as a forgemesh mesh would move them: every member but the coordinator sends its update up, and
  // the coordinator sends the aggregate down to each of them (dense FedAvg); the MoE's rounds are counted the same way on the wire.
  const members = Math.max(0, siteNames.length - 1)
  const perSiteAfter = (o: BaselineOutcome, bytesSent: number, round: number): number => bytesSent + round * (o.modelBytesPerRound ?? 0)
  const baselineRounds = (o: BaselineOutcome, sitesSending: number, perSite?: boolean): RoundRecord[] => {
    let before = 0
    return o.rounds.map((r: FederationRecord) => {
      const after = perSiteAfter(o, r.bytesSent, r.round)
      const sent = Math.max(0, after - before) * sitesSending
      before = after
      const record: RoundRecord = { round: r.round, accuracy: clamp01(r.accuracy), loss: Math.max(0, r.loss), bytesPerLink: [], bytesSent: Math.round(sent), durationS: 0, participants: sitesSending > 0 ? siteNames : [], epsSpent: {} }
      if (perSite === true && o.perSite !== undefined && r.round === o.rounds.at(-1)?.round) {
        record.perSite = Object.fromEntries(o.perSite.map(p => [siteNames[p.site]!, { accuracy: clamp01(p.accuracy), loss: Math.max(0, p.loss) }]))
      }
      return record
    })
  }
  const summary = (o: BaselineOutcome, sending: number): Report['summary']['methods']['moe'] => ({
    accuracy: clamp01(o.accuracy), bytesSent: Math.round(perSiteAfter(o, o.bytesPerSite, topology.federation.rounds) * sending), rounds: topology.federation.rounds, wallSeconds: o.wallSeconds
  })
  const report: Report = {
    schema: REPORT_SCHEMA,
    topology: { name: topology.name, seed: topology.seed, sites: siteNames, transport: topology.transport, execution: moe.execution },
    methods: {
      moe: { rounds: moeRounds },
      localOnly: { rounds: baselineRounds(base.localOnly, 0, true) },
      fedavgDense: { rounds: baselineRounds(base.fedavgDense, members) },
      centralized: { rounds: baselineRounds(base.centralized, 0) }
    },
    summary: {
      methods: {
        moe: { accuracy: clamp01(moe.assembled.accuracy), bytesSent: moeRounds.reduce((a, r) => a + r.bytesSent, 0), rounds: last?.round ?? 0, wallSeconds: moe.wallSeconds },
        localOnly: {
          ...summary(base.localOnly, 0),
          perSite: Object.fromEntries((base.localOnly.perSite ?? []).map(p => [siteNames[p.site]!, { accuracy: clamp01(p.accuracy), bytesSent: 0, rounds: topology.federation.rounds, wallSeconds: base.localOnly.wallSeconds }]))
        },
        fedavgDense: summary(base.fedavgDense, members),
        centralized: summary(base.centralized, 0)
      }
    },
    // Each site's own processes were measured; inline, all sites share this process and each is attributed an even share (docs/simulator.md).
    sites: topology.sites.map(s => {
      const measured = moe.sites[s.name]?.peakRssBytes ?? null
      return moe.execution === 'process'
        ? { name: s.name, peakRssBytes: measured, peakRssSource: 'measured' as const, backend: run.backend, events: moe.events.get(s.name) ?? [] }
        : { name: s.name, peakRssBytes: Math.round(run.peakRssBytes / siteNames.length), peakRssSource: 'attributed' as const, backend: run.backend, events: moe.events.get(s.name) ?? [] }
    }),
    run: { startedAt: run.started.toISOString(), wallSeconds: run.wallSeconds, node: process.version, platform: `${process.platform}-${process.arch}`, cpus: Math.max(1, cpus().length), peakRssBytes: run.peakRssBytes }
  }
  return parseReport(report, 'the report this run built')
}

/** The process's peak resident set size so far (the kernel's high-water mark, which sampling would miss). */
export const peakRssBytes = (): number => process.resourceUsage().maxRSS * 1024

function withPublication (r: RoundRecord, p: MoeMethodResult['publication']): RoundRecord {
  const links = new Map(r.bytesPerLink.map(l => [`${l.from}\u0000${l.to}`, { ...l }]))
  for (const l of p.bytesPerLink) {
    const key = `${l.from}\u0000${l.to}`
    const had = links.get(key)
    if (had !== undefined) had.bytes += l.bytes
    else links.set(key, { ...l })
  }
  const bytesPerLink = [...links.values()].sort((a, b) => a.from === b.from ? (a.to < b.to ? -1 : 1) : (a.from < b.from ? -1 : 1))
  return { ...r, bytesPerLink, bytesSent: r.bytesSent + p.bytesSent }
}

const clamp01 = (x: number): number => Math.min(1, Math.max(0, x))

/** One line on memory: per site as measured, or the process's peak attributed evenly. */
export function rssLine (report: Report): string {
  const mb = (b: number): string => `${(b / 1e6).toFixed(0)} MB`
  const own = report.run.peakRssBytes ?? 0
  const measured = report.sites.filter(s => s.peakRssSource === 'measured' && s.peakRssBytes !== null).map(s => s.peakRssBytes!)
  if (report.topology.execution === 'process' && measured.length > 0) {
    const total = measured.reduce((a, b) => a + b, 0)
    return `peak RSS per site ${mb(Math.min(...measured))}–${mb(Math.max(...measured))} (measured, one process per site; sum ${mb(total)}); simulator process ${mb(own)}`
  }
  const n = report.sites.length
  return `peak RSS ${mb(own)} for ${n} sites in one process (${(own / 1e6 / n).toFixed(1)} MB per site, attributed evenly)`
}

/** The methods side by side, for a terminal. */
export function summaryTable (report: Report): string {
  const rows: Array<[string, string, string, string, string]> = [['method', 'accuracy', 'bytes sent', 'rounds', 'wall time']]
  const label: Record<string, string> = { moe: 'forgemesh MoE', localOnly: 'local only (mean)', fedavgDense: 'dense FedAvg', centralized: 'centralized (pooled data)' }
  for (const [name, m] of Object.entries(report.summary.methods)) {
    rows.push([label[name] ?? name, `${(m.accuracy * 100).toFixed(2)}%`, fmtBytes(m.bytesSent), String(m.rounds), `${m.wallSeconds.toFixed(1)} s`])
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map(r => r[c]!.length)))
  return rows.map((r, i) => {
    const line = r.map((cell, c) => c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)).join('   ')
    return i === 0 ? `${line}\n${widths.map(w => '-'.repeat(w)).join('   ')}` : line
  }).join('\n')
}
