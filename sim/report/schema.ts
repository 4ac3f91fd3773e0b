/**
 * report.json: what a simulator run writes, as a zod schema (the contract,
 * documented field by field in docs/simulator.md). Version 1.
 *
 * Same seed, same report — except the fields listed in TIMING_FIELDS, which
 * measure the machine rather than the federation; `withoutTimings` drops
 * them so two runs can be compared.
 */
import { z } from 'zod'
import { describeIssues } from '../../protocols/validation.ts'
import { ReportError } from '../errors.ts'

export const REPORT_SCHEMA = 'forgemesh.sim.report/1'

/** The methods every run compares; the MoE is forgemesh's own. */
export const METHODS = ['moe', 'localOnly', 'fedavgDense', 'centralized'] as const
export type Method = typeof METHODS[number]

const SiteName = z.string().min(1)
const Fraction = z.number().min(0).max(1)
const Bytes = z.number().int().min(0)

export const LinkBytes = z.strictObject({ from: SiteName, to: SiteName, bytes: Bytes })

export const RoundRecord = z.strictObject({
  round: z.number().int().min(0),
  /** Test accuracy after the round; for localOnly the mean over sites. */
  accuracy: Fraction,
  loss: z.number().min(0),
  /** Bytes on the wire per directed link during the round (Noise and yamux framing included). */
  bytesPerLink: z.array(LinkBytes),
  /** Sum of bytesPerLink. */
  bytesSent: Bytes,
  /** Wall time of the round (timing). */
  durationS: z.number().min(0),
  /** Sites whose update was counted. */
  participants: z.array(SiteName),
  /** Cumulative epsilon spent per site after this round; {} without DP. */
  epsSpent: z.record(SiteName, z.number().min(0)),
  /** localOnly: each site's own accuracy and loss. */
  perSite: z.record(SiteName, z.strictObject({ accuracy: Fraction, loss: z.number().min(0) })).optional()
})
export type RoundRecord = z.infer<typeof RoundRecord>

export const MethodSummary = z.strictObject({
  /** Final test accuracy; for localOnly the mean over sites. */
  accuracy: Fraction,
  bytesSent: Bytes,
  rounds: z.number().int().min(0),
  /** Wall time of the whole method (timing). */
  wallSeconds: z.number().min(0)
})

const PerSiteSummary = z.record(SiteName, MethodSummary)

export const Report = z.strictObject({
  schema: z.literal(REPORT_SCHEMA),
  topology: z.strictObject({
    name: z.string(),
    seed: z.number().int().min(0),
    sites: z.array(SiteName).min(1),
    transport: z.enum(['tcp', 'memory']),
    /** Where the sites ran: each in a child process of its own, or all in the simulator's process. */
    execution: z.enum(['process', 'inline'])
  }),
  methods: z.strictObject({
    moe: z.strictObject({ rounds: z.array(RoundRecord) }),
    localOnly: z.strictObject({ rounds: z.array(RoundRecord) }),
    fedavgDense: z.strictObject({ rounds: z.array(RoundRecord) }),
    centralized: z.strictObject({ rounds: z.array(RoundRecord) })
  }),
  summary: z.strictObject({
    methods: z.strictObject({
      moe: MethodSummary,
      localOnly: MethodSummary.extend({ perSite: PerSiteSummary }),
      fedavgDense: MethodSummary,
      centralized: MethodSummary
    })
  }),
  /** Per site: resources and what happened to it. */
  sites: z.array(z.strictObject({
    name: SiteName,
    /**
     * Peak resident set size of the site (timing). process execution: measured, the
     * highest of the kernel's high-water marks (VmHWM) of the site's child processes,
     * one per life (a crash and restart is a new process). inline execution: every
     * site shares one process, so this is its peak RSS (run.peakRssBytes) divided
     * evenly among the sites. null where nothing was measured.
     */
    peakRssBytes: Bytes.nullable(),
    /** How peakRssBytes was obtained: "measured" per site, or "attributed" (an even share of one process). */
    peakRssSource: z.enum(['measured', 'attributed']),
    backend: z.string(),
    events: z.array(z.strictObject({ round: z.number().int().min(0), kind: z.enum(['crash', 'restart', 'join', 'leave', 'partition', 'heal', 'slow']) }))
  })),
  /** When and where it ran (timing). */
  run: z.strictObject({
    startedAt: z.string(),
    wallSeconds: z.number().min(0),
    node: z.string(),
    platform: z.string(),
    cpus: z.number().int().min(1),
    /** Peak RSS of the simulator's process: the observer and the baselines' worker thread, and inline every site too. */
    peakRssBytes: Bytes.optional()
  })
})
export type Report = z.infer<typeof Report>

/**
 * Paths whose values are timings or wire measurements: they differ between
 * runs with one seed. Bytes on the wire include retries (a member resends an
 * update the coordinator was not ready for), and how often that happens
 * depends on the machine's speed, not on the federation.
 */
export const TIMING_FIELDS = [
  'methods.*.rounds[].durationS',
  'methods.*.rounds[].bytesPerLink',
  'methods.*.rounds[].bytesSent',
  'summary.methods.*.bytesSent',
  'summary.methods.*.wallSeconds',
  'summary.methods.localOnly.perSite.*.wallSeconds',
  'sites[].peakRssBytes',
  'run'
] as const

/** A copy without the timing fields, for comparing runs. */
export function withoutTimings (report: Report): unknown {
  const r = structuredClone(report) as Partial<Report> & Report
  delete (r as Partial<Report>).run
  for (const m of METHODS) {
    for (const round of r.methods[m].rounds) {
      const loose = round as Partial<RoundRecord>
      loose.durationS = undefined
      loose.bytesPerLink = undefined
      loose.bytesSent = undefined
    }
    ;(r.summary.methods[m] as { wallSeconds?: number, bytesSent?: number }).wallSeconds = undefined
    ;(r.summary.methods[m] as { bytesSent?: number }).bytesSent = undefined
  }
  for (const s of Object.values(r.summary.methods.localOnly.perSite)) (s as { wallSeconds?: number }).wallSeconds = undefined
  for (const s of r.sites) s.peakRssBytes = null
  return JSON.parse(JSON.stringify(r))
}

/** Validates a report (e.g. one read back from disk); names the bad field. */
export function parseReport (input: unknown, source = 'report'): Report {
  const r = Report.safeParse(input)
  if (r.success) return r.data
  throw new ReportError(`${source}: invalid report:\n  ${describeIssues(r.error.issues, input).join('\n  ')}`)
}

/** p-quantile (0..1) by linear interpolation between order statistics. */
export function quantile (values: readonly number[], p: number): number {
  if (values.length === 0) return NaN
  const s = [...values].sort((a, b) => a - b)
  const pos = (s.length - 1) * p
  const lo = Math.floor(pos)
  const hi = Math.ceil(pos)
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo)
}
