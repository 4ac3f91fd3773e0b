import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createManualClock } from '../coordinator/components.ts'
import { auditKey, createAuditLog, verifyAuditLog, type AuditRecord } from '../node/audit.ts'
import { encodeJson, openSiteStore, type SiteStore } from '../node/store.ts'

describe('audit log: append-only, hash-chained, in LevelDB', () => {
  let dir: string
  let store: SiteStore
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fm-audit-'))
    store = await openSiteStore(join(dir, 'db'))
    const log = createAuditLog(store, { clock: createManualClock(1_700_000_000_000) })
    // Concurrent appends must still form one chain.
    await Promise.all([
      log.append('site:init', { site: 'a' }),
      log.append('peer:joined', { peer: 'p1' }),
      log.append('round:committed', { round: 1, hash: 'ab' }),
      log.append('privacy:spent', { epsilon: 0.5 }),
      log.append('artifact:published', { hash: 'cd' })
    ])
  })
  afterEach(async () => {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })

  async function all (): Promise<AuditRecord[]> {
    const out: AuditRecord[] = []
    for await (const r of createAuditLog(store, { clock: createManualClock() }).records()) out.push(r)
    return out
  }

  it('verifies an untouched chain', async () => {
    const v = await verifyAuditLog(store)
    expect(v).toMatchObject({ ok: true, records: 5, problems: [] })
    const records = await all()
    expect(records.map(r => r.seq)).toEqual([1, 2, 3, 4, 5])
    expect(records.map(r => r.kind)).toEqual(['site:init', 'peer:joined', 'round:committed', 'privacy:spent', 'artifact:published'])
    expect(records[1]!.prevHash).toBe(records[0]!.hash)
  })

  it('names an edited record', async () => {
    const r = (await all())[2]!
    await store.putBytes('audit', auditKey(3), encodeJson({ ...r, data: { round: 1, hash: 'ff' } }))
    const v = await verifyAuditLog(store)
    expect(v.ok).toBe(false)
    expect(v.problems).toEqual([{ seq: 3, problem: 'edited', detail: 'record 3 (round:committed) does not match its own hash' }])
  })

  it('names a removed record', async () => {
    await store.del('audit', auditKey(2))
    const v = await verifyAuditLog(store)
    expect(v.problems.map(p => [p.seq, p.problem])).toEqual([[2, 'removed']])
  })

  it('names reordered records', async () => {
    const [, b, c] = await all()
    await store.putBytes('audit', auditKey(2), encodeJson(c))
    await store.putBytes('audit', auditKey(3), encodeJson(b))
    const v = await verifyAuditLog(store)
    expect(v.ok).toBe(false)
    expect(v.problems.map(p => p.problem)).toContain('reordered')
    expect(v.problems.every(p => p.seq === 2 || p.seq === 3)).toBe(true)
  })

  it('names a truncated tail', async () => {
    await store.del('audit', auditKey(5))
    const v = await verifyAuditLog(store)
    expect(v.problems.map(p => [p.seq, p.problem])).toEqual([[5, 'truncated']])
  })

  it('names a record that is no longer JSON', async () => {
    await store.putBytes('audit', auditKey(4), new Uint8Array([0x7b, 0xff]))
    const v = await verifyAuditLog(store)
    expect(v.problems[0]).toMatchObject({ seq: 4, problem: 'unreadable' })
  })
})
