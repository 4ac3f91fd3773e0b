import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { createSeededRandom } from '../coordinator/components.ts'
import { detectColumn, ibanValid, luhnValid, type DetectorKind } from '../node/data/detectors.ts'
import { columnsWithDecision, formatGateReport, loadGateReport, runGate, storeGateReport } from '../node/data/gate.ts'
import { parseDatasetSchema } from '../node/data/schema.ts'
import { readRawTable } from '../node/data/table.ts'
import { openSiteStore } from '../node/store.ts'

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/data/${name}`, import.meta.url))
const json = (name: string): unknown => JSON.parse(readFileSync(fixture(name), 'utf8'))
const kinds = (values: string[], freeText = false): DetectorKind[] => detectColumn(values, { freeText }).map(f => f.kind)
const fires = (value: string): DetectorKind[] => kinds([value])

describe('identifier detectors', () => {
  it('checksums: Luhn and IBAN mod-97', () => {
    expect(luhnValid('79927398713')).toBe(true)
    expect(luhnValid('79927398710')).toBe(false)
    expect(ibanValid('GB82WEST12345698765432')).toBe(true)
    expect(ibanValid('GB82WEST12345698765433')).toBe(false)
    expect(ibanValid('DE89 3704 0044 0532 0130 00')).toBe(true)
  })

  it('finds each kind, also inside longer text', () => {
    expect(fires('ann@example.org')).toEqual(['email'])
    expect(fires('write to ann.lee+x@mail.example.co.uk today')).toEqual(['email'])
    expect(fires('+44 20 7946 0958')).toEqual(['phone'])
    expect(fires('call (030) 1234 5678 after 5')).toEqual(['phone'])
    expect(fires('555-123-4567')).toEqual(['phone'])
    expect(fires('030 1234567')).toEqual(['phone'])
    expect(fires('4111 1111 1111 1111')).toEqual(['card'])
    expect(fires('card 378282246310005 exp 12/29')).toEqual(['card'])
    expect(fires('IBAN: DE89 3704 0044 0532 0130 00 please')).toEqual(['iban'])
    expect(fires('GB82WEST12345698765432')).toEqual(['iban'])
    expect(fires('078-05-1120')).toEqual(['national-id'])
    expect(fires('NI number AB 12 34 56 C')).toEqual(['national-id'])
    expect(fires('850709-1234')).toEqual(['national-id'])
  })

  it('does not fire on ordinary values: numbers, dates, failed checksums, malformed addresses', () => {
    for (const v of ['4111111111111112', 'GB82WEST12345698765433', '000-12-3456', '666-12-3456', '2024-01-15', '12:30:00',
      '+12345', '61000.5', '-1234567.25', '3.14159', '1e-7', 'a@b', 'not an email @ all', 'north', 'P001', '']) {
      expect([v, fires(v)]).toEqual([v, []])
    }
    // 5,000 seeded ordinary numbers of every scale: no finding.
    const rng = createSeededRandom(9)
    const numbers = Array.from({ length: 5000 }, (_, i) => {
      const x = (rng.next() - 0.5) * 10 ** rng.int(9)
      return i % 2 === 0 ? String(x) : String(Math.round(x))
    })
    expect(detectColumn(numbers, { freeText: true })).toEqual([])
  })

  it('flags free text when at least 30% of values are prose', () => {
    const prose = 'The patient reports mild pain in the left knee'
    expect(kinds([prose, 'ok', 'ok', 'ok', 'ok', 'ok'], true)).toEqual([])
    expect(kinds([prose, prose, 'ok', 'ok', 'ok', 'ok'], true)).toEqual(['free-text'])
    expect(kinds([prose, prose, prose], false)).toEqual([])
  })
})

describe('suitability gate', () => {
  const schema = parseDatasetSchema(json('patients.schema.json'))
  const policy = json('patients.policy.json') as Record<string, unknown>
  const columnsOf = async (): Promise<Record<string, string[]>> => {
    const raw = await readRawTable(fixture('patients.csv'), schema)
    return Object.fromEntries(raw.columns.map((c, k) => [c, raw.rows.map(r => r.cells[k]!)]))
  }

  it('decides per column: identifiers dropped whatever the policy says, restricted to the generator', async () => {
    const report = runGate(await columnsOf(), schema, policy, { dataset: 'patients' })
    expect(report.rows).toBe(6)
    expect(report.columns.map(c => [c.column, c.mark, c.findings, c.decision])).toEqual([
      ['id', 'usable', [], 'drop'],
      ['region', 'usable', [], 'drop'],
      ['age', 'usable', [], 'train'],
      ['income', 'restricted', [], 'synthesize'],
      ['smoker', 'usable', [], 'train'],
      ['account', 'usable', ['card numbers (Luhn) in 6 of 6 values'], 'drop'],
      ['email', 'usable', ['e-mail addresses in 5 of 5 values'], 'drop'],
      ['notes', 'usable', ['free text in 5 of 6 values'], 'drop'],
      ['outcome', 'usable', [], 'train']
    ])
    expect(report.columns.find(c => c.column === 'account')!.why).toBe('likely direct identifiers (card): never trained on or synthesized, whatever the policy says')
    expect(columnsWithDecision(report, 'synthesize')).toEqual(['income'])
    // Marking an identifier column restricted does not send it to the generator either.
    const again = runGate(await columnsOf(), schema, { ...policy, columns: { income: 'restricted', email: 'restricted' } })
    expect(columnsWithDecision(again, 'synthesize')).toEqual(['income'])
    // A policy can send restricted columns nowhere.
    const nowhere = runGate(await columnsOf(), schema, { ...policy, restricted: 'drop' })
    expect(columnsWithDecision(nowhere, 'synthesize')).toEqual([])
    expect(nowhere.columns.find(c => c.column === 'income')!.why).toBe('the policy marks it restricted and sends restricted columns nowhere')
    expect(columnsWithDecision(runGate(await columnsOf(), schema, { defaultMark: 'drop', columns: { outcome: 'usable' } }), 'train')).toEqual(['outcome'])
  })

  it('prints a decision report (column, finding, decision, why) that holds no raw value', async () => {
    const report = runGate(await columnsOf(), schema, policy, { dataset: 'patients' })
    const text = formatGateReport(report)
    const lines = text.split('\n')
    expect(lines[0]).toBe('suitability gate: patients, 6 rows; 3 train, 1 synthesize, 5 drop')
    expect(lines[1]).toBe('column   kind         policy      findings                              decision    why')
    expect(lines[8]).toBe('email    text         usable      e-mail addresses in 5 of 5 values     drop        likely direct identifiers (email): never trained on or synthesized, whatever the policy says')
    const serialised = text + JSON.stringify(report)
    for (const secret of ['ann@example.org', '4111111111111111', 'P001', 'Routine check', '52000']) expect(serialised).not.toContain(secret)
  })

  it('stores the report with the site and reads it back validated (real LevelDB)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fm-gate-'))
    const store = await openSiteStore(join(dir, 'db'))
    try {
      const report = runGate(await columnsOf(), schema, policy, { dataset: 'patients' })
      await storeGateReport(store, report)
      expect(await loadGateReport(store, 'patients')).toEqual(report)
      expect(await loadGateReport(store, 'other')).toBeUndefined()
      await store.putJson('meta', 'gate/broken', { dataset: 'broken', rows: -1, columns: [] })
      await expect(loadGateReport(store, 'broken')).rejects.toMatchObject({ name: 'CorruptRecordError' })
    } finally {
      await store.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
