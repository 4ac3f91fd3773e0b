/**
 * The audit log: append-only and hash-chained, in the store's `audit`
 * sublevel. Each record commits to the one before it (prevHash) and to its
 * own position (seq), and the head (last seq and hash) is written in the same
 * batch, so an edited, removed, reordered or truncated record is detected by
 * `verifyAuditLog` and named.
 */
import { createHash } from 'node:crypto'
import { z } from 'zod'
import type { Clock } from '../coordinator/components.ts'
import { AuditChainBrokenError } from './errors.ts'
import type { SiteStore } from './store.ts'

export const AUDIT_KINDS = [
  'site:init', 'node:start', 'node:stop',
  'peer:joined', 'peer:refused', 'peer:left',
  'round:committed', 'round:aborted',
  'artifact:published', 'artifact:fetched', 'artifact:withdrawn', 'artifact:rejected',
  'privacy:spent', 'privacy:refused', 'data:gate'
] as const

export const AuditRecord = z.strictObject({
  seq: z.number().int().min(1),
  time: z.number(),
  kind: z.enum(AUDIT_KINDS),
  data: z.record(z.string(), z.unknown()),
  prevHash: z.string().regex(/^[0-9a-f]{64}$/),
  hash: z.string().regex(/^[0-9a-f]{64}$/)
})
export type AuditRecord = z.infer<typeof AuditRecord>
export type AuditKind = typeof AUDIT_KINDS[number]

const AuditHead = z.strictObject({ seq: z.number().int().min(0), hash: z.string() })

export const GENESIS_HASH = '0'.repeat(64)
const HEAD_KEY = 'audit:head'

/** Keys sort in append order: fixed-width decimal sequence numbers. */
export function auditKey (seq: number): string {
  return seq.toString().padStart(12, '0')
}

/** JSON with object keys sorted, so a record hashes the same however it was built. */
export function canonicalJson (value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value)
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
}

export function hashAuditRecord (r: Omit<AuditRecord, 'hash'>): string {
  return createHash('sha256').update(canonicalJson({ seq: r.seq, time: r.time, kind: r.kind, data: r.data, prevHash: r.prevHash })).digest('hex')
}

export interface AuditLog {
  append: (kind: AuditKind, data: Record<string, unknown>) => Promise<AuditRecord>
  records: () => AsyncIterable<AuditRecord>
}

export function createAuditLog (store: SiteStore, components: { clock: Clock }): AuditLog {
  // Appends are serialised so two concurrent events cannot claim the same seq.
  let tail: Promise<unknown> = Promise.resolve()

  const appendNow = async (kind: AuditKind, data: Record<string, unknown>): Promise<AuditRecord> => {
    const head = await store.getJson('meta', HEAD_KEY, AuditHead) ?? { seq: 0, hash: GENESIS_HASH }
    const body = { seq: head.seq + 1, time: components.clock.now(), kind, data: JSON.parse(JSON.stringify(data)) as Record<string, unknown>, prevHash: head.hash }
    const record: AuditRecord = { ...body, hash: hashAuditRecord(body) }
    await store.batch([
      { sublevel: 'audit', type: 'put', key: auditKey(record.seq), value: record },
      { sublevel: 'meta', type: 'put', key: HEAD_KEY, value: { seq: record.seq, hash: record.hash } }
    ])
    return record
  }

  return {
    append: async (kind, data) => {
      const next = tail.then(async () => await appendNow(kind, data))
      tail = next.catch(() => {})
      return await next
    },
    records: async function * () {
      for await (const [key, bytes] of store.entries('audit')) {
        yield parseRecord(key, bytes)
      }
    }
  }
}

function parseRecord (key: string, bytes: Uint8Array): AuditRecord {
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch {
    throw new AuditChainBrokenError(`audit record ${key} is not valid JSON`, { seq: Number(key), problem: 'unreadable' })
  }
  const parsed = AuditRecord.safeParse(json)
  if (!parsed.success) throw new AuditChainBrokenError(`audit record ${key} is malformed: ${parsed.error.issues[0]?.message ?? ''}`, { seq: Number(key), problem: 'malformed' })
  return parsed.data
}

export interface AuditVerification {
  ok: boolean
  records: number
  headHash: string
  problems: Array<{ seq: number, problem: 'edited' | 'removed' | 'reordered' | 'truncated' | 'malformed' | 'unreadable', detail: string }>
}

/** Walks the whole chain and names every record that does not fit. */
export async function verifyAuditLog (store: SiteStore): Promise<AuditVerification> {
  const problems: AuditVerification['problems'] = []
  let expectedSeq = 1
  let prevHash = GENESIS_HASH
  let count = 0
  for await (const [key, bytes] of store.entries('audit')) {
    let r: AuditRecord
    try {
      r = parseRecord(key, bytes)
    } catch (err) {
      const e = err as AuditChainBrokenError
      problems.push({ seq: Number(key), problem: e.problem, detail: e.message })
      expectedSeq = Number(key) + 1
      prevHash = 'unknown'
      continue
    }
    count++
    const outOfPlace = r.seq !== Number(key)
    if (outOfPlace) {
      problems.push({ seq: Number(key), problem: 'reordered', detail: `record stored at position ${Number(key)} claims seq ${r.seq}` })
    } else if (r.seq !== expectedSeq) {
      problems.push({ seq: expectedSeq, problem: 'removed', detail: `records ${expectedSeq}..${r.seq - 1} are missing before seq ${r.seq}` })
    }
    if (hashAuditRecord(r) !== r.hash) {
      problems.push({ seq: r.seq, problem: 'edited', detail: `record ${r.seq} (${r.kind}) does not match its own hash` })
    } else if (prevHash !== 'unknown' && r.prevHash !== prevHash && r.seq === expectedSeq) {
      problems.push({ seq: r.seq, problem: 'reordered', detail: `record ${r.seq} (${r.kind}) does not follow record ${r.seq - 1}` })
    }
    expectedSeq = Number(key) + 1
    // After a record out of place, the next link cannot be judged against it.
    prevHash = outOfPlace ? 'unknown' : r.hash
  }
  const head = await store.getJson('meta', HEAD_KEY, AuditHead)
  if (head !== undefined && (head.seq !== expectedSeq - 1 || (prevHash !== 'unknown' && head.hash !== prevHash))) {
    problems.push({ seq: head.seq, problem: 'truncated', detail: `the head says ${head.seq} records ending in ${head.hash.slice(0, 12)}, the log ends at ${expectedSeq - 1}` })
  }
  return { ok: problems.length === 0, records: count, headHash: prevHash, problems }
}
