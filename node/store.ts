/**
 * One LevelDB per site, in sublevels (ARCHITECTURE.md, "Storage"). Records
 * are JSON validated with zod when read back; blobs are content-addressed and
 * checked against their sha256 on every read. Writes that belong together go
 * through `batch`, which commits across sublevels atomically.
 */
import { createHash } from 'node:crypto'
import { Level } from 'level'
import type { z } from 'zod'
import { CorruptRecordError, StoreClosedError } from './errors.ts'

export const SUBLEVELS = ['identity', 'peers', 'rounds', 'checkpoints', 'experts', 'blobs', 'privacy', 'audit', 'meta'] as const
export type SublevelName = typeof SUBLEVELS[number]

type Root = Level<string, Uint8Array>
type Sub = ReturnType<typeof makeSub>

function makeSub (root: Root, name: string) {
  return root.sublevel<string, Uint8Array>(name, { keyEncoding: 'utf8', valueEncoding: 'view' })
}

export interface BatchOp {
  sublevel: SublevelName
  type: 'put' | 'del'
  key: string
  /** JSON-serialisable record, or raw bytes. Ignored for 'del'. */
  value?: unknown
}

export interface SiteStore {
  readonly path: string
  open: () => Promise<void>
  close: () => Promise<void>
  getJson: <S extends z.ZodType>(sublevel: SublevelName, key: string, schema: S) => Promise<z.infer<S> | undefined>
  putJson: (sublevel: SublevelName, key: string, value: unknown) => Promise<void>
  getBytes: (sublevel: SublevelName, key: string) => Promise<Uint8Array | undefined>
  putBytes: (sublevel: SublevelName, key: string, value: Uint8Array) => Promise<void>
  del: (sublevel: SublevelName, key: string) => Promise<void>
  /** Keys and raw values of a sublevel in key order, optionally within [gte, lt). */
  entries: (sublevel: SublevelName, range?: { gte?: string, lt?: string, reverse?: boolean, limit?: number }) => AsyncIterable<[string, Uint8Array]>
  batch: (ops: BatchOp[]) => Promise<void>
  /** Stores bytes under their sha256 (hex) in `blobs`; returns the hash. */
  putBlob: (bytes: Uint8Array) => Promise<string>
  /** Reads a blob and verifies it against its hash: a mismatch throws CorruptRecordError. */
  getBlob: (hash: string) => Promise<Uint8Array | undefined>
}

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

export function sha256Hex (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

export function encodeJson (value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value))
}

export function createSiteStore (path: string): SiteStore {
  const root: Root = new Level<string, Uint8Array>(path, { keyEncoding: 'utf8', valueEncoding: 'view' })
  const subs = new Map<SublevelName, Sub>(SUBLEVELS.map(name => [name, makeSub(root, name)]))
  const sub = (name: SublevelName): Sub => subs.get(name)!
  let closed = false

  const ensureOpen = (): void => {
    if (closed) throw new StoreClosedError(`store at ${path} is closed`)
  }

  const getBytes = async (sublevel: SublevelName, key: string): Promise<Uint8Array | undefined> => {
    ensureOpen()
    const value = await sub(sublevel).get(key) as Uint8Array | undefined
    // classic-level hands back Buffers; callers get a plain Uint8Array view.
    return value === undefined ? undefined : new Uint8Array(value.buffer, value.byteOffset, value.byteLength)
  }

  return {
    path,
    open: async () => {
      closed = false
      await root.open()
    },
    close: async () => {
      if (closed) return
      closed = true
      await root.close()
    },
    getJson: async (sublevel, key, schema) => {
      const bytes = await getBytes(sublevel, key)
      if (bytes === undefined) return undefined
      let parsed: unknown
      try {
        parsed = JSON.parse(decoder.decode(bytes))
      } catch (err) {
        throw new CorruptRecordError(`${sublevel}/${key} in ${path} is not valid JSON`, { cause: err })
      }
      const result = schema.safeParse(parsed)
      if (!result.success) throw new CorruptRecordError(`${sublevel}/${key} in ${path} does not match its schema: ${result.error.issues[0]?.message ?? 'invalid'}`)
      return result.data
    },
    putJson: async (sublevel, key, value) => {
      ensureOpen()
      await sub(sublevel).put(key, encodeJson(value))
    },
    getBytes,
    putBytes: async (sublevel, key, value) => {
      ensureOpen()
      await sub(sublevel).put(key, value)
    },
    del: async (sublevel, key) => {
      ensureOpen()
      await sub(sublevel).del(key)
    },
    entries: (sublevel, range = {}) => {
      ensureOpen()
      return sub(sublevel).iterator({ ...range, keys: true, values: true }) as AsyncIterable<[string, Uint8Array]>
    },
    batch: async (ops) => {
      ensureOpen()
      // A chained batch on the root commits every sublevel's ops in one write.
      const chain = root.batch()
      for (const op of ops) {
        if (op.type === 'del') chain.del(op.key, { sublevel: sub(op.sublevel) as never })
        else chain.put(op.key, op.value instanceof Uint8Array ? op.value : encodeJson(op.value), { sublevel: sub(op.sublevel) as never })
      }
      await chain.write()
    },
    putBlob: async (bytes) => {
      ensureOpen()
      const hash = sha256Hex(bytes)
      await sub('blobs').put(hash, bytes)
      return hash
    },
    getBlob: async (hash) => {
      const bytes = await getBytes('blobs', hash)
      if (bytes === undefined) return undefined
      const actual = sha256Hex(bytes)
      if (actual !== hash) throw new CorruptRecordError(`blob ${hash} in ${path} is corrupt: its bytes hash to ${actual}`)
      return bytes
    }
  }
}

/** Opens a site store, creating the folder if needed. */
export async function openSiteStore (path: string): Promise<SiteStore> {
  const store = createSiteStore(path)
  await store.open()
  return store
}
