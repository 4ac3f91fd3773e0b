import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createManualClock, createSilentLogger } from '../coordinator/components.ts'
import { runSynthesis } from '../node/data/synthetic/flow.ts'
import { createPrivacyLedger } from '../node/privacy/ledger.ts'
import { listSyntheticRuns, loadSyntheticRun } from '../node/data/synthetic/report.ts'
import { readSchemaFile } from '../node/data/synthetic/schema-file.ts'
import { loadGateReport } from '../node/data/gate.ts'
import { readRecords } from '../node/data/table.ts'
import { openSiteStore, type SiteStore } from '../node/store.ts'

const PENGUINS_JSON = new URL('../node_modules/vega-datasets/data/penguins.json', import.meta.url)
const SCHEMA = new URL('./fixtures/synthetic/penguins.schema.json', import.meta.url)

/** penguins.json as the CSV a site would hold: nulls become empty cells (bad rows the policy skips). */
function penguinsCsv (): string {
  const rows = JSON.parse(readFileSync(PENGUINS_JSON, 'utf8')) as Record<string, string | number | null>[]
  const header = Object.keys(rows[0]!)
  const quote = (v: string): string => /[",\n]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v
  return [header.map(quote).join(','), ...rows.map(r => header.map(h => quote(r[h] === null ? '' : String(r[h]))).join(','))].join('\n') + '\n'
}

describe('synthetic flow on penguins (vega-datasets, real LevelDB)', () => {
  let dir: string
  let store: SiteStore
  let csv: string
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fm-synth-'))
    csv = join(dir, 'penguins.csv')
    writeFileSync(csv, penguinsCsv())
    store = await openSiteStore(join(dir, 'site'))
  })
  afterAll(async () => {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const run = async (epsilon: number, out: string, seed: number | string = 1, site = store, budget = 100) => {
    const { schema, policy } = await readSchemaFile(SCHEMA.pathname)
    const ledger = createPrivacyLedger(site, { epsilonBudget: budget, delta: 1e-3 })
    return await runSynthesis({ file: csv, schema, policy, epsilon, delta: 1e-6, rows: 300, out, seed }, { store: site, ledger, clock: createManualClock(1_700_000_000_000), logger: createSilentLogger() })
  }

  it('at eps = 1 and eps = 10: the report, the stored decision and a CSV the loader reads back', async () => {
    const low = await run(1, join(dir, 'eps1.csv'))
    const high = await run(10, join(dir, 'eps10.csv'))
    for (const r of [low, high]) console.log(`penguins eps=${r.report.privacy.epsilon}:`, JSON.stringify({ tvd1: r.report.tvd.oneWay.mean, tvd2: r.report.tvd.twoWay.mean, efficacy: r.report.mlEfficacy, exactMatch: r.report.privacyCheck.exactMatchRate, dcr: r.report.privacyCheck.distanceToClosestRecord, tree: r.report.tree }))

    // 344 rows, 11 with a missing value or Sex '.': skipped under the policy.
    expect(high.report.rows).toEqual({ real: 333, train: 266, holdout: 67, skipped: 11, synthetic: 300 })
    expect(high.report.privacy.rho).toBeCloseTo(1.539279, 6)
    // The acceptance bar of the issue, and fidelity that improves with eps.
    expect(high.report.mlEfficacy!.label).toBe('Species')
    expect(high.report.mlEfficacy!.realAccuracy).toBeGreaterThan(0.95)
    expect(high.report.mlEfficacy!.ratio).toBeGreaterThanOrEqual(0.8)
    expect(high.report.tvd.oneWay.mean).toBeLessThan(0.08)
    expect(high.report.tvd.twoWay.mean).toBeLessThan(0.22)
    expect(low.report.tvd.oneWay.mean).toBeGreaterThan(high.report.tvd.oneWay.mean)
    expect(low.report.tvd.twoWay.mean).toBeGreaterThan(high.report.tvd.twoWay.mean)
    expect(high.report.tree).toHaveLength(6)
    // Continuous synthetic values never copy a real row here.
    expect(high.report.privacyCheck.exactMatchRate).toBe(0)
    expect(high.report.privacyCheck.distanceToClosestRecord.median).toBeGreaterThan(0)

    const stored = await loadSyntheticRun(store, high.record.id)
    expect(stored?.report).toEqual(high.report)
    expect(stored?.decisions.map(d => d.action)).toEqual(new Array(7).fill('synthesize'))
    expect(stored?.decisions.find(d => d.column === 'Sex')?.why).toBe('restricted by the dataset policy')
    expect((await loadGateReport(store, 'penguins.csv'))?.columns.find(c => c.column === 'Island')?.decision).toBe('synthesize')
    expect((await listSyntheticRuns(store)).length).toBeGreaterThanOrEqual(2)

    // The written CSV is a valid table of the same schema.
    const back = await readRecords(join(dir, 'eps10.csv'), high.schema)
    expect(back.records).toHaveLength(300)
    expect(back.skipped).toBe(0)
  })

  it('is deterministic for a seed and differs across seeds', async () => {
    const a = await run(5, join(dir, 'a.csv'), 'seed-a')
    const b = await run(5, join(dir, 'b.csv'), 'seed-a')
    const c = await run(5, join(dir, 'c.csv'), 'seed-c')
    expect(readFileSync(join(dir, 'a.csv'), 'utf8')).toBe(readFileSync(join(dir, 'b.csv'), 'utf8'))
    expect(a.record.output!.sha256).toBe(b.record.output!.sha256)
    expect(c.record.output!.sha256).not.toBe(a.record.output!.sha256)
  })

  it('charges the ledger, and refuses a run the budget cannot pay for before reading anything, writing nothing', async () => {
    const site = await openSiteStore(join(dir, 'small-budget'))
    try {
      const ledger = createPrivacyLedger(site, { epsilonBudget: 2, delta: 1e-3 })
      const first = await run(1.5, join(dir, 'first.csv'), 1, site, 2)
      expect((await ledger.entries()).map(e => [e.kind, e.epsilon, e.delta, e.label])).toEqual([['synthetic', 1.5, 1e-6, first.record.ledgerLabel]])
      expect(await ledger.remaining()).toEqual({ epsilon: 0.5, delta: 1e-3 - 1e-6 })
      const out = join(dir, 'refused.csv')
      await expect(run(1, out, 1, site, 2)).rejects.toMatchObject({ name: 'PrivacyBudgetExceededError', message: expect.stringContaining('would exceed the site\'s privacy budget (eps would reach 2.50000 of the budget 2') })
      expect(existsSync(out)).toBe(false)
      expect(await ledger.entries()).toHaveLength(1)
      expect(await listSyntheticRuns(site)).toHaveLength(1)
      // Refused before the file is touched: a missing file is not even noticed.
      const { schema, policy } = await readSchemaFile(SCHEMA.pathname)
      await expect(runSynthesis({ file: join(dir, 'missing.csv'), schema, policy, epsilon: 1, delta: 1e-6, rows: 10 }, { store: site, ledger, clock: createManualClock(), logger: createSilentLogger() }))
        .rejects.toMatchObject({ name: 'PrivacyBudgetExceededError' })
    } finally {
      await site.close()
    }
  })
})

describe('synthetic flow: bad schemas and bad files get named errors', () => {
  let dir: string
  let store: SiteStore
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fm-synth-bad-'))
    store = await openSiteStore(join(dir, 'site'))
  })
  afterAll(async () => {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })
  const components = () => ({ store, ledger: createPrivacyLedger(store, { epsilonBudget: 1000, delta: 0.5 }), clock: createManualClock(), logger: createSilentLogger() })
  const label = { name: 'y', kind: 'label' as const, categories: ['a', 'b'] }

  it('a numeric column without bounds', async () => {
    writeFileSync(join(dir, 't.csv'), 'x,y\n1,a\n')
    await expect(runSynthesis({ file: join(dir, 't.csv'), schema: { columns: [{ name: 'x', kind: 'numeric' }, label] }, epsilon: 1, delta: 1e-6, rows: 5 }, components()))
      .rejects.toMatchObject({ name: 'SyntheticSchemaError', message: expect.stringContaining("column 'x' is numeric but declares no bounds") })
  })

  it('schema files: not JSON, no label, an unknown kind', async () => {
    const f = join(dir, 's.json')
    writeFileSync(f, '{ "columns": [')
    await expect(readSchemaFile(f)).rejects.toMatchObject({ name: 'DatasetSchemaError', message: expect.stringContaining('not valid JSON') })
    writeFileSync(f, JSON.stringify({ columns: [{ name: 'x', kind: 'numeric', bounds: { min: 0, max: 1 } }] }))
    await expect(readSchemaFile(f)).rejects.toMatchObject({ name: 'DatasetSchemaError', message: expect.stringContaining('exactly one label column is required, found 0') })
    writeFileSync(f, JSON.stringify({ columns: [{ name: 'x', kind: 'float' }, label] }))
    await expect(readSchemaFile(f)).rejects.toMatchObject({ name: 'DatasetSchemaError', message: expect.stringContaining('columns[0].kind') })
    writeFileSync(f, JSON.stringify({ columns: [label], policy: { columns: { zz: 'drop' } } }))
    await expect(readSchemaFile(f)).rejects.toMatchObject({ name: 'DatasetSchemaError', message: expect.stringContaining("marks column 'zz'") })
  })

  it('bad data files: a wrong column count, a value out of bounds, an empty file', async () => {
    const schema = { columns: [{ name: 'x', kind: 'numeric' as const, bounds: { min: 0, max: 10 } }, label] }
    const cases: [string, string, string][] = [
      ['x,y\n1,a\n2\n', 'ColumnCountError', ':3: expected 2 fields'],
      ['x,y\n1,a\n20,b\n', 'BadValueError', "column 'x': 20 is outside the declared bounds [0, 10]"],
      ['', 'EmptyDataFileError', 'the file is empty']
    ]
    for (const [text, name, message] of cases) {
      writeFileSync(join(dir, 'd.csv'), text)
      await expect(runSynthesis({ file: join(dir, 'd.csv'), schema, epsilon: 1, delta: 1e-6, rows: 5 }, components()))
        .rejects.toMatchObject({ name, message: expect.stringContaining(message) })
    }
    await expect(runSynthesis({ file: join(dir, 'd.csv'), schema, epsilon: -1, delta: 1e-6, rows: 5 }, components()))
      .rejects.toMatchObject({ name: 'InvalidArgumentError', message: 'epsilon must be a finite number > 0, got -1' })
  })
})
