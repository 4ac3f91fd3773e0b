import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { parseCsv } from '../node/data/csv.ts'
import { parseJsonl } from '../node/data/jsonl.ts'
import { loadTable } from '../node/data/load.ts'
import { parseDatasetPolicy, parseDatasetSchema } from '../node/data/schema.ts'
import { readRecords } from '../node/data/table.ts'

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/data/${name}`, import.meta.url))
const json = (name: string): unknown => JSON.parse(readFileSync(fixture(name), 'utf8'))
const patientsSchema = parseDatasetSchema(json('patients.schema.json'))
const patientsPolicy = parseDatasetPolicy(json('patients.policy.json'))
const mini = parseDatasetSchema(json('mini.schema.json'))

describe('parseCsv (RFC 4180)', () => {
  it('handles quotes, doubled quotes, delimiters and newlines inside quotes, CRLF and blank lines', () => {
    const text = '\ufeffa,b,c\r\n1,"x, y","say ""hi"""\r\n\r\n2,"two\nlines",\n3,,""'
    expect(parseCsv(text, 'f.csv')).toEqual([
      { line: 1, cells: ['a', 'b', 'c'] },
      { line: 2, cells: ['1', 'x, y', 'say "hi"'] },
      { line: 4, cells: ['2', 'two\nlines', ''] },
      { line: 6, cells: ['3', '', ''] }
    ])
    expect(parseCsv('a;b\n1;2', 'f.csv', ';')).toEqual([{ line: 1, cells: ['a', 'b'] }, { line: 2, cells: ['1', '2'] }])
  })

  it('refuses stray quotes with CsvSyntaxError at file:line', () => {
    expect(() => parseCsv('a,b\n1,"open\n2,3\n', 'f.csv')).toThrowError(expect.objectContaining({ name: 'CsvSyntaxError', message: 'f.csv:2: unterminated quoted field (opened on line 2)', line: 2 }))
    expect(() => parseCsv('a,b\n1,x"y\n', 'f.csv')).toThrowError(expect.objectContaining({ name: 'CsvSyntaxError', message: 'f.csv:2: a quote inside an unquoted field (quote the whole field and double the quote)' }))
    expect(() => parseCsv('a,b\n\n1,"x"y\n', 'f.csv')).toThrowError(expect.objectContaining({ name: 'CsvSyntaxError', message: 'f.csv:3: unexpected "y" after a closing quote' }))
  })
})

describe('parseJsonl', () => {
  it('reads one object per line with line numbers; numbers as their shortest text; null as empty', () => {
    expect(parseJsonl('{"a":1.50,"b":"x"}\n\n{"a":null,"b":"y"}\r\n', 'f.jsonl').map(r => ({ line: r.line, fields: Object.fromEntries(r.fields) }))).toEqual([
      { line: 1, fields: { a: '1.5', b: 'x' } },
      { line: 3, fields: { a: '', b: 'y' } }
    ])
    expect(() => parseJsonl('{"a":1}\n[1,2]\n', 'f.jsonl')).toThrowError(expect.objectContaining({ name: 'JsonlSyntaxError', message: 'f.jsonl:2: each line must be one JSON object' }))
    expect(() => parseJsonl('{"a":{"b":1}}\n', 'f.jsonl')).toThrowError(expect.objectContaining({ name: 'BadValueError', message: "f.jsonl:1: field 'a' holds object; expected a number, a string or null" }))
  })
})

describe('loadTable: schema-driven encoding behind the gate', () => {
  it('trains only on gated columns: standardised numeric, one-hot categorical, label indices, groups and lines', async () => {
    const t = await loadTable(fixture('patients.csv'), patientsSchema, patientsPolicy)
    expect(t.gate.columns.map(c => [c.column, c.decision])).toEqual([
      ['id', 'drop'], ['region', 'drop'], ['age', 'train'], ['income', 'synthesize'], ['smoker', 'train'],
      ['account', 'drop'], ['email', 'drop'], ['notes', 'drop'], ['outcome', 'train']
    ])
    expect(t.featureNames).toEqual(['age', 'smoker=no', 'smoker=yes'])
    expect(t.classes).toEqual(['healthy', 'sick'])
    expect(t.data.n).toBe(6)
    expect(t.data.dim).toBe(3)
    expect(t.data.numClasses).toBe(2)
    expect([...t.data.y]).toEqual([0, 1, 0, 1, 1, 0])
    expect([...t.lines]).toEqual([2, 3, 4, 6, 7, 8])
    expect(t.groups).toEqual(['north', 'south', 'north', 'east', 'south', 'east'])
    const ages = [34, 58, 45, 29, 71, 52]
    const mean = ages.reduce((a, b) => a + b, 0) / 6
    const std = Math.sqrt(ages.reduce((a, b) => a + (b - mean) ** 2, 0) / 6)
    expect(t.stats.numeric).toEqual({ age: { mean, std } })
    expect(mean).toBeCloseTo(48.1667, 4)
    expect(std).toBeCloseTo(14.2058, 4)
    for (let i = 0; i < 6; i++) {
      expect(t.data.x[i * 3]).toBe(Math.fround((ages[i]! - mean) / std))
    }
    // smoker one-hot: no, yes, no, yes, no, no
    expect([1, 2, 4, 5, 7, 8, 10, 11, 13, 14, 16, 17].map(k => t.data.x[k])).toEqual([1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 1, 0])
    expect(t.skipped).toBe(0)
  })

  it('reads JSONL the same way (key order free, CRLF and blank lines fine)', async () => {
    const t = await loadTable(fixture('mini.jsonl'), mini)
    expect(t.featureNames).toEqual(['age', 'smoker=no', 'smoker=yes'])
    expect([...t.data.y]).toEqual([1, 0, 0])
    expect([...t.lines]).toEqual([1, 3, 4])
    expect(t.groups).toEqual(['west', 'west', 'east'])
    expect(t.stats.numeric.age!.mean).toBeCloseTo(134 / 3, 12)
  })

  it('a policy drop removes a feature; a constant column encodes as 0', async () => {
    const t = await loadTable(fixture('mini.jsonl'), mini, { columns: { age: 'drop' } })
    expect(t.featureNames).toEqual(['smoker=no', 'smoker=yes'])
    const one = await loadTable(fixture('bad-category.csv'), mini, { columns: { smoker: 'drop' } })
    expect(one.stats.numeric.age).toEqual({ mean: 40, std: 1 })
    expect([...one.data.x]).toEqual([0])
  })
})

describe('loader bad input: named errors with file:line', () => {
  const cases: Array<[string, string, string]> = [
    ['bad-count.csv', 'ColumnCountError', ':3: expected 4 fields (as the header), got 2'],
    ['bad-nan.csv', 'BadValueError', ":3: column 'age': \"NaN\" is not a number"],
    ['bad-number.csv', 'BadValueError', ":2: column 'age': \"forty\" is not a number"],
    ['bad-bounds.csv', 'BadValueError', ":2: column 'age': 150 is outside the declared bounds [0, 120]"],
    ['bad-category.csv', 'BadValueError', ":2: column 'smoker': unknown category \"maybe\" (declared: \"no\", \"yes\")"],
    ['bad-label.csv', 'UnknownLabelError', ":4: label \"cured\" in column 'outcome' is not a declared class (\"healthy\", \"sick\")"],
    ['empty.csv', 'EmptyDataFileError', ': the file is empty'],
    ['header-only.csv', 'EmptyDataFileError', ': has a header but no data rows'],
    ['bad-quote.csv', 'CsvSyntaxError', ':3: unterminated quoted field (opened on line 3)'],
    ['bad-header.csv', 'HeaderError', ":1: column 'name' is not declared in the schema: declare it (its kind, and a policy mark) or remove it"],
    ['bad-syntax.jsonl', 'JsonlSyntaxError', ':2: not valid JSON'],
    ['bad-fields.jsonl', 'ColumnCountError', ":3: expected the 4 declared fields: missing field 'age'"],
    ['missing.csv', 'DataFileNotFoundError', ': no such file']
  ]
  for (const [file, name, message] of cases) {
    it(`${file} -> ${name}`, async () => {
      const path = fixture(file)
      await expect(loadTable(path, mini)).rejects.toMatchObject({ name, file: path, message: expect.stringContaining(path + message) })
      // The raw reader used by the synthetic-data generator refuses it the same way.
      await expect(readRecords(path, mini)).rejects.toMatchObject({ name })
    })
  }

  it('refuses a file above maxBytes before reading it', async () => {
    await expect(loadTable(fixture('mixed.csv'), mini, { maxBytes: 10 })).rejects.toMatchObject({
      name: 'DataFileTooLargeError', message: `${fixture('mixed.csv')}: 129 bytes is above the limit of 10`
    })
  })

  it('skipBadRows skips, counts and reports bad rows instead of refusing the file', async () => {
    // Without skipBadRows the earliest bad line is reported, whichever check found it.
    await expect(loadTable(fixture('mixed.csv'), mini)).rejects.toMatchObject({ name: 'BadValueError', line: 3 })
    await expect(readRecords(fixture('mixed.csv'), mini)).rejects.toMatchObject({ name: 'BadValueError', line: 3 })
    await expect(readRecords(fixture('mixed.csv'), mini, { skipBadRows: true })).resolves.toMatchObject({ skipped: 3 })
    const t = await loadTable(fixture('mixed.csv'), mini, { skipBadRows: true })
    expect(t.data.n).toBe(3)
    expect([...t.lines]).toEqual([2, 4, 7])
    expect(t.skipped).toBe(3)
    const path = fixture('mixed.csv')
    expect(t.problems).toEqual([
      `${path}:3: column 'age': "NaN" is not a number`,
      `${path}:5: expected 4 fields (as the header), got 2`,
      `${path}:6: label "cured" in column 'outcome' is not a declared class ("healthy", "sick")`
    ])
    await expect(loadTable(fixture('bad-label.csv'), mini, { skipBadRows: true, columns: {} })).resolves.toMatchObject({ skipped: 1 })
  })

  it('refuses a bad schema or policy with DatasetSchemaError naming the field', () => {
    expect(() => parseDatasetSchema({ columns: [{ name: 'a', kind: 'categorical' }, { name: 'y', kind: 'label', categories: ['0'] }] }))
      .toThrowError(expect.objectContaining({ name: 'DatasetSchemaError', message: 'invalid dataset schema: columns[0].categories: a categorical column must declare its categories, got nothing' }))
    expect(() => parseDatasetSchema({ columns: [{ name: 'a', kind: 'numeric' }] }))
      .toThrowError(expect.objectContaining({ name: 'DatasetSchemaError', message: 'invalid dataset schema: columns: exactly one label column is required, found 0, got an array of 1' }))
    expect(() => parseDatasetPolicy({ columns: { a: 'secret' } }))
      .toThrowError(expect.objectContaining({ name: 'DatasetSchemaError', message: 'invalid dataset policy: columns.a: expected one of "usable", "restricted", "drop", got "secret"' }))
  })

  it('refuses a policy that names an undeclared column, and a label the gate will not let through', async () => {
    await expect(loadTable(fixture('mini.jsonl'), mini, { columns: { agee: 'drop' } })).rejects.toMatchObject({
      name: 'DatasetSchemaError', message: "dataset policy marks column 'agee', which the schema does not declare"
    })
    await expect(loadTable(fixture('mini.jsonl'), mini, { columns: { outcome: 'restricted' } })).rejects.toMatchObject({
      name: 'DatasetSchemaError', message: `${fixture('mini.jsonl')}: the label column 'outcome' cannot be trained on: the policy marks it restricted: it goes to the DP synthetic-data generator, never to training directly`
    })
  })
})

describe('readRecords: validated raw values for the synthetic-data generator', () => {
  it('types every column (numbers as numbers, the rest as given) and keeps line numbers', async () => {
    const r = await readRecords(fixture('patients.csv'), patientsSchema)
    expect(r.skipped).toBe(0)
    expect(r.records.map(x => x.line)).toEqual([2, 3, 4, 6, 7, 8])
    expect(r.records[1]).toEqual({
      line: 3,
      values: { id: 'P002', region: 'south', age: 58, income: 61000.5, smoker: 'yes', account: 5500005555555559, email: 'bob@example.com', notes: 'Follow-up in six weeks; patient reports "mild" pain', outcome: 'sick' }
    })
    expect(r.records[2]!.values.notes).toBe('Patient moved\nto a new address last month, update records')
  })
})
