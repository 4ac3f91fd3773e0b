/**
 * The durable round log of a site, on node/store.ts. Each committed round
 * is one record in `rounds`, its aggregate (the new global vector, float32
 * little-endian) and its strategy state (JSON) as content-addressed blobs,
 * and the `meta` pointer to the last round, all written in ONE batch: after
 * a crash a round is either wholly there or not at all.
 *
 * Records form a hash chain (prevHash = hash of the previous record), so a
 * restarted site that fetches the rounds it missed from a peer can verify
 * each against its own last record and each blob against its record's hash,
 * before it writes anything.
 */
import { z } from 'zod'
import type { RoundOutcome } from '../coordinator/round.ts'
import type { JsonValue } from '../coordinator/strategies/types.ts'
import { RoundConflictError, RoundHashMismatchError, RoundLogGapError } from './errors.ts'
import { sha256Hex, type SiteStore } from './store.ts'

const hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'expected a sha256 hex digest')
const siteId = z.string().min(1).max(256)

export const CommittedRoundSchema = z.object({
  round: z.number().int().positive(),
  /** Sites whose updates counted, sorted. */
  participants: z.array(siteId).min(1),
  /** Invited sites that missed the deadline, sorted. */
  dropouts: z.array(siteId),
  /** The idempotency keys that counted: one per participant. */
  updates: z.array(z.object({ site: siteId, nonce: z.string().min(1).max(128), samples: z.number().int().positive() }).strict()),
  aggregateHash: hex64,
  stateHash: hex64,
  specHash: z.string().min(1).max(256),
  strategy: z.string().min(1).max(64),
  seed: z.number().int().nonnegative(),
  /** Hash of the previous record; null for round 1. */
  prevHash: hex64.nullable()
}).strict()
export type CommittedRound = z.infer<typeof CommittedRoundSchema>

/** A round as fetched from a peer, not yet trusted. */
export interface FetchedRound {
  record: unknown
  aggregateBytes: Uint8Array
  strategyState: unknown
}

/** Where missed rounds come from (the mesh implements this against peers). */
export interface RoundSource {
  fetchRound: (round: number, options: { signal?: AbortSignal }) => Promise<FetchedRound | undefined>
}

const LastPointer = z.object({ round: z.number().int().positive(), recordHash: hex64 }).strict()
const LAST_KEY = 'round-log:last'
const MAX_JSON_DEPTH = 64

/** JSON with object keys sorted at every level: the form that is hashed. */
export function canonicalJson (value: unknown): string {
  const walk = (v: unknown, depth: number): unknown => {
    if (depth > MAX_JSON_DEPTH) throw new RangeError('value nests too deeply to hash')
    if (Array.isArray(v)) return v.map(x => walk(x, depth + 1))
    if (v !== null && typeof v === 'object') {
      return Object.fromEntries(Object.keys(v).sort().map(k => [k, walk((v as Record<string, unknown>)[k], depth + 1)]))
    }
    return v
  }
  return JSON.stringify(walk(value, 0))
}

export function recordHash (record: CommittedRound): string {
  return sha256Hex(new TextEncoder().encode(canonicalJson(record)))
}

/** The bytes that are hashed and stored for an aggregate: float32 little-endian. */
export function aggregateToBytes (next: Float32Array): Uint8Array {
  const copy = new Float32Array(next)
  return new Uint8Array(copy.buffer)
}

export function bytesToAggregate (bytes: Uint8Array): Float32Array {
  if (bytes.length % 4 !== 0) throw new RoundHashMismatchError(`aggregate of ${bytes.length} bytes is not a whole number of float32 values`)
  const out = new Float32Array(bytes.length / 4)
  new Uint8Array(out.buffer).set(bytes)
  return out
}

export function stateToBytes (state: JsonValue): Uint8Array {
  return new TextEncoder().encode(canonicalJson(state))
}

/** The record for a round outcome of the coordinator/ machine, linked to the previous record. */
export function recordFromOutcome (outcome: RoundOutcome, prevHash: string | null): { record: CommittedRound, aggregateBytes: Uint8Array, strategyState: JsonValue } {
  const aggregateBytes = aggregateToBytes(outcome.next)
  const record = CommittedRoundSchema.parse({
    round: outcome.round,
    participants: outcome.participants,
    dropouts: outcome.dropouts,
    updates: outcome.updates,
    aggregateHash: sha256Hex(aggregateBytes),
    stateHash: sha256Hex(stateToBytes(outcome.state)),
    specHash: outcome.specHash,
    strategy: outcome.strategy,
    seed: outcome.seed,
    prevHash
  })
  return { record, aggregateBytes, strategyState: outcome.state }
}

export interface RoundLog {
  /** Writes a round in one batch. Re-committing the identical record is a no-op ('exists'). */
  commit: (record: CommittedRound, payload: { strategyState: JsonValue, aggregateBytes: Uint8Array }) => Promise<'committed' | 'exists'>
  /** The last committed record, or undefined for an empty log. */
  last: () => Promise<CommittedRound | undefined>
  /** Hash of the last record (what the next record's prevHash must be), null for an empty log. */
  lastHash: () => Promise<string | null>
  get: (round: number) => Promise<CommittedRound | undefined>
  /** The committed aggregate of a round, verified against its hash. */
  aggregate: (round: number) => Promise<Float32Array | undefined>
  /** The strategy state committed with a round, verified against its hash. */
  strategyState: (round: number) => Promise<JsonValue | undefined>
  /** Checks a round fetched from a peer: schema, place in the chain, and hashes. Writes nothing. */
  verifyFetched: (record: unknown, aggregateBytes: Uint8Array, strategyState?: unknown) => Promise<CommittedRound>
  /** Fetches, verifies and commits every round after the last one until the source has no more. */
  catchUp: (source: RoundSource, options?: { signal?: AbortSignal, upTo?: number }) => Promise<number>
  records: () => Promise<CommittedRound[]>
  /** A committed round with its bytes, as a peer serves it to a site catching up. */
  serve: (round: number) => Promise<FetchedRound | undefined>
}

const roundKey = (round: number): string => String(round).padStart(12, '0')

export function createRoundLog (store: SiteStore): RoundLog {
  const get = async (round: number): Promise<CommittedRound | undefined> => await store.getJson('rounds', roundKey(round), CommittedRoundSchema)

  const lastPointer = async (): Promise<z.infer<typeof LastPointer> | undefined> => await store.getJson('meta', LAST_KEY, LastPointer)

  /** Checks that `record` is the next link after the log's last record, and that the bytes match. */
  const checkNext = async (record: CommittedRound, aggregateBytes: Uint8Array, stateBytes: Uint8Array | undefined): Promise<void> => {
    const last = await lastPointer()
    const expectedRound = (last?.round ?? 0) + 1
    if (record.round !== expectedRound) throw new RoundLogGapError(`round ${record.round} does not follow the log: the next round is ${expectedRound}`)
    const expectedPrev = last?.recordHash ?? null
    if (record.prevHash !== expectedPrev) throw new RoundLogGapError(`round ${record.round} links to ${String(record.prevHash)}, but the last record hashes to ${String(expectedPrev)}`)
    const actual = sha256Hex(aggregateBytes)
    if (actual !== record.aggregateHash) throw new RoundHashMismatchError(`round ${record.round}: the aggregate hashes to ${actual}, its record says ${record.aggregateHash}`)
    if (aggregateBytes.length % 4 !== 0) throw new RoundHashMismatchError(`round ${record.round}: the aggregate of ${aggregateBytes.length} bytes is not float32`)
    if (stateBytes !== undefined) {
      const s = sha256Hex(stateBytes)
      if (s !== record.stateHash) throw new RoundHashMismatchError(`round ${record.round}: the strategy state hashes to ${s}, its record says ${record.stateHash}`)
    }
  }

  const parseRecord = (input: unknown): CommittedRound => {
    const parsed = CommittedRoundSchema.safeParse(input)
    if (!parsed.success) throw new RoundHashMismatchError(`fetched round record is malformed: ${parsed.error.issues.map(i => `${i.path.join('.')}: ${i.message}`).join('; ')}`)
    return parsed.data
  }

  const readState = async (record: CommittedRound): Promise<JsonValue> => {
    const bytes = await store.getBlob(record.stateHash)
    if (bytes === undefined) throw new RoundHashMismatchError(`round ${record.round}: strategy state blob ${record.stateHash} is missing`)
    return JSON.parse(new TextDecoder().decode(bytes)) as JsonValue
  }

  const commit: RoundLog['commit'] = async (input, { strategyState, aggregateBytes }) => {
    const record = CommittedRoundSchema.parse(input)
    const existing = await get(record.round)
    if (existing !== undefined) {
      if (recordHash(existing) === recordHash(record)) return 'exists'
      throw new RoundConflictError(`round ${record.round} is already committed with aggregate ${existing.aggregateHash}; refusing a different record (aggregate ${record.aggregateHash})`)
    }
    const stateBytes = stateToBytes(strategyState)
    await checkNext(record, aggregateBytes, stateBytes)
    await store.batch([
      { sublevel: 'blobs', type: 'put', key: record.aggregateHash, value: aggregateBytes },
      { sublevel: 'blobs', type: 'put', key: record.stateHash, value: stateBytes },
      { sublevel: 'rounds', type: 'put', key: roundKey(record.round), value: record },
      { sublevel: 'meta', type: 'put', key: LAST_KEY, value: { round: record.round, recordHash: recordHash(record) } }
    ])
    return 'committed'
  }

  const verifyFetched: RoundLog['verifyFetched'] = async (input, aggregateBytes, strategyState) => {
    const record = parseRecord(input)
    const stateBytes = strategyState === undefined ? undefined : stateToBytes(strategyState as JsonValue)
    await checkNext(record, aggregateBytes, stateBytes)
    return record
  }

  return {
    commit,
    last: async () => {
      const p = await lastPointer()
      return p === undefined ? undefined : await get(p.round)
    },
    lastHash: async () => (await lastPointer())?.recordHash ?? null,
    get,
    aggregate: async (round) => {
      const record = await get(round)
      if (record === undefined) return undefined
      const bytes = await store.getBlob(record.aggregateHash)
      if (bytes === undefined) throw new RoundHashMismatchError(`round ${round}: aggregate blob ${record.aggregateHash} is missing`)
      return bytesToAggregate(bytes)
    },
    strategyState: async (round) => {
      const record = await get(round)
      return record === undefined ? undefined : await readState(record)
    },
    verifyFetched,
    catchUp: async (source, options = {}) => {
      let count = 0
      for (;;) {
        options.signal?.throwIfAborted()
        const next = ((await lastPointer())?.round ?? 0) + 1
        if (options.upTo !== undefined && next > options.upTo) break
        const fetched = await source.fetchRound(next, { signal: options.signal })
        if (fetched === undefined) break
        if (fetched.strategyState === undefined) throw new RoundHashMismatchError(`round ${next} was fetched without its strategy state`)
        const record = await verifyFetched(fetched.record, fetched.aggregateBytes, fetched.strategyState)
        await commit(record, { strategyState: fetched.strategyState as JsonValue, aggregateBytes: fetched.aggregateBytes })
        count++
      }
      return count
    },
    serve: async (round) => {
      const record = await get(round)
      if (record === undefined) return undefined
      const aggregateBytes = await store.getBlob(record.aggregateHash)
      if (aggregateBytes === undefined) throw new RoundHashMismatchError(`round ${round}: aggregate blob ${record.aggregateHash} is missing`)
      return { record, aggregateBytes, strategyState: await readState(record) }
    },
    records: async () => {
      const out: CommittedRound[] = []
      for await (const [key] of store.entries('rounds')) {
        const r = await store.getJson('rounds', key, CommittedRoundSchema)
        if (r !== undefined) out.push(r)
      }
      return out
    }
  }
}
