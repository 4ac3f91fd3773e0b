/**
 * The quality report of a synthetic run (written by `forgemesh data synth
 * --report` and stored with the site), and the stored run record: the
 * decision (which columns, why), the parameters, the source and output
 * hashes, and the report. Validated with zod when read back from the store.
 */
import { z } from 'zod'
import type { SiteStore } from '../../store.ts'

const Finite = z.number().refine(Number.isFinite, 'expected a finite number')
const Share = z.number().min(0).max(1)

export const SyntheticReport = z.strictObject({
  version: z.literal(1),
  generator: z.literal('mst'),
  privacy: z.strictObject({
    epsilon: z.number().positive(),
    delta: z.number().gt(0).lt(1),
    /** The zCDP budget the run used: the largest rho implying (epsilon, delta)-DP. */
    rho: z.number().positive(),
    conversion: z.literal('cks20'),
    neighbouring: z.literal('add/remove one row'),
    sigmaOneWay: Finite,
    sigmaTwoWay: Finite.nullable(),
    selectEpsilon: Finite.nullable()
  }),
  rows: z.strictObject({
    /** Valid real rows read from the file. */
    real: z.number().int().nonnegative(),
    /** Rows the generator saw. */
    train: z.number().int().nonnegative(),
    /** Real rows held out for ML efficacy and the DCR reference; the generator never saw them. */
    holdout: z.number().int().nonnegative(),
    /** Bad rows skipped under the policy's skipBadRows. */
    skipped: z.number().int().nonnegative(),
    synthetic: z.number().int().nonnegative()
  }),
  /** The spanning tree of 2-way marginals the run chose, by column name. */
  tree: z.array(z.tuple([z.string(), z.string()])),
  /** Mean (and worst) total-variation distance of marginals, synthetic vs real training rows, on the generator's bins. */
  tvd: z.strictObject({
    oneWay: z.strictObject({ mean: Share, max: Share, perColumn: z.record(z.string(), Share) }),
    twoWay: z.strictObject({ mean: Share, max: Share, pairs: z.number().int().nonnegative() })
  }),
  /** Train on synthetic, test on held-out real, as a ratio to train on real. null without a label or holdout. */
  mlEfficacy: z.strictObject({
    label: z.string(),
    model: z.literal('multinomial-logistic'),
    realAccuracy: Share,
    syntheticAccuracy: Share,
    ratio: z.number().nonnegative()
  }).nullable(),
  /** Sanity checks, not a proof: the proof is the DP guarantee above. */
  privacyCheck: z.strictObject({
    exactMatchRate: Share,
    holdoutExactMatchRate: Share.nullable(),
    distanceToClosestRecord: z.strictObject({
      metric: z.literal('gower'),
      median: Share,
      p05: Share,
      holdoutMedian: Share.nullable(),
      holdoutP05: Share.nullable(),
      queried: z.number().int().nonnegative()
    })
  })
})
export type SyntheticReport = z.infer<typeof SyntheticReport>

export const SyntheticRunRecord = z.strictObject({
  id: z.string(),
  createdAt: z.number(),
  seed: z.union([z.number(), z.string()]),
  source: z.strictObject({ file: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/) }),
  output: z.strictObject({ file: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/) }).nullable(),
  decisions: z.array(z.strictObject({ column: z.string(), action: z.enum(['synthesize', 'exclude']), why: z.string() })),
  bins: z.record(z.string(), z.number().int().positive()),
  holdoutFraction: z.number().min(0).lt(1),
  ledgerLabel: z.string(),
  report: SyntheticReport
})
export type SyntheticRunRecord = z.infer<typeof SyntheticRunRecord>

const PREFIX = 'synthetic/'

export async function storeSyntheticRun (store: SiteStore, record: SyntheticRunRecord): Promise<void> {
  await store.putJson('meta', PREFIX + record.id, SyntheticRunRecord.parse(record))
}

export async function loadSyntheticRun (store: SiteStore, id: string): Promise<SyntheticRunRecord | undefined> {
  return await store.getJson('meta', PREFIX + id, SyntheticRunRecord)
}

/** Every stored run, oldest first (ids start with a zero-padded time). */
export async function listSyntheticRuns (store: SiteStore): Promise<SyntheticRunRecord[]> {
  const out: SyntheticRunRecord[] = []
  for await (const [key] of store.entries('meta', { gte: PREFIX, lt: PREFIX + '\uffff' })) {
    const run = await loadSyntheticRun(store, key.slice(PREFIX.length))
    if (run !== undefined) out.push(run)
  }
  return out
}
