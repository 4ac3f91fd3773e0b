import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SyntheticReport } from '../node/data/synthetic/report.ts'
import { runCli, type CliResult } from './support/cli.ts'

const SCHEMA = fileURLToPath(new URL('./fixtures/synthetic/penguins.schema.json', import.meta.url))

const forgemesh = async (args: string[], cwd: string): Promise<CliResult> => await runCli(args, { cwd })

describe('forgemesh data (the real CLI in a child process)', () => {
  let dir: string
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'fm-synth-cli-'))
    const rows = JSON.parse(readFileSync(new URL('../node_modules/vega-datasets/data/penguins.json', import.meta.url), 'utf8')) as Record<string, string | number | null>[]
    const header = Object.keys(rows[0]!)
    writeFileSync(join(dir, 'penguins.csv'), [header.join(','), ...rows.map(r => header.map(h => r[h] === null ? '' : String(r[h])).join(','))].join('\n') + '\n')
  })
  afterAll(() => { rmSync(dir, { recursive: true, force: true }) })

  it('check prints the gate decisions', async () => {
    const text = await forgemesh(['data', 'check', 'penguins.csv', '--schema', SCHEMA], dir)
    expect(text.code).toBe(0)
    expect(text.stdout).toContain('suitability gate: penguins.csv, 344 rows; 5 train, 2 synthesize, 0 drop')
    expect(text.stdout).toMatch(/^Sex +categorical +restricted +- +synthesize/m)
    const json = await forgemesh(['data', 'check', 'penguins.csv', '--schema', SCHEMA, '--json'], dir)
    expect(JSON.parse(json.stdout).gate.columns.map((c: { decision: string }) => c.decision)).toEqual(['train', 'synthesize', 'train', 'train', 'train', 'train', 'synthesize'])
  })

  it('synth writes the CSV and the report, charges the ledger, and a run over budget is refused', async () => {
    const common = ['data', 'synth', 'penguins.csv', '--schema', SCHEMA, '--delta', '1e-6', '--site', 'site', '--budget-epsilon', '12', '--budget-delta', '1e-4']
    const ok = await forgemesh([...common, '--epsilon', '10', '--rows', '400', '--out', 'syn.csv', '--report', 'report.json', '--seed', '3'], dir)
    expect(ok.code).toBe(0)
    expect(ok.stderr).toContain('"event":"synthetic.done"')
    expect(ok.stdout).toContain('wrote 400 synthetic rows to syn.csv (eps=10, delta=0.000001; fitted on 266 of 333 real rows, 67 held out, 11 skipped)')
    expect(ok.stdout).toContain('privacy ledger: eps 10.00 of 12 spent')
    const report = SyntheticReport.parse(JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')))
    expect(report.mlEfficacy!.ratio).toBeGreaterThanOrEqual(0.8)
    expect(report.rows.synthetic).toBe(400)
    expect(readFileSync(join(dir, 'syn.csv'), 'utf8').trimEnd().split('\n')).toHaveLength(401)

    // Without budget flags the site's existing ledger (eps 12) applies.
    const refused = await forgemesh(['data', 'synth', 'penguins.csv', '--schema', SCHEMA, '--delta', '1e-6', '--site', 'site', '--epsilon', '5', '--rows', '10', '--out', 'more.csv', '--json'], dir)
    expect(refused.code).toBe(1)
    expect(JSON.parse(refused.stdout).error).toMatchObject({ name: 'PrivacyBudgetExceededError', message: expect.stringContaining('eps would reach 15.0000 of the budget 12') })
    expect(existsSync(join(dir, 'more.csv'))).toBe(false)
  })

  it('bad schemas exit 2 with the named error; a missing flag is a usage error', async () => {
    writeFileSync(join(dir, 'bad.json'), JSON.stringify({ columns: [{ name: 'x', kind: 'numeric' }, { name: 'y', kind: 'label', categories: ['a'] }] }))
    writeFileSync(join(dir, 't.csv'), 'x,y\n1,a\n')
    const noBounds = await forgemesh(['data', 'synth', 't.csv', '--schema', 'bad.json', '--epsilon', '1', '--delta', '1e-6', '--rows', '5', '--out', 'o.csv', '--site', 'site2', '--json'], dir)
    expect(noBounds.code).toBe(2)
    expect(JSON.parse(noBounds.stdout).error).toMatchObject({ name: 'SyntheticSchemaError', message: expect.stringContaining("column 'x' is numeric but declares no bounds") })
    writeFileSync(join(dir, 'bad.json'), '{"columns": 3}')
    const notSchema = await forgemesh(['data', 'check', 't.csv', '--schema', 'bad.json'], dir)
    expect(notSchema.code).toBe(2)
    expect(notSchema.stderr).toMatch(/^forgemesh: bad\.json: invalid dataset schema: columns/)
    const missing = await forgemesh(['data', 'synth', 't.csv', '--schema', SCHEMA, '--delta', '1e-6', '--rows', '5', '--out', 'o.csv'], dir)
    expect(missing.code).toBe(2)
    expect(missing.stderr).toBe('forgemesh: --epsilon is required\n')
  })
})
