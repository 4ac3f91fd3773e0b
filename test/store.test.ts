import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { openSiteStore, sha256Hex, type SiteStore } from '../node/store.ts'

describe('site store (real LevelDB in a temp folder)', () => {
  let dir: string
  let store: SiteStore
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fm-store-'))
    store = await openSiteStore(join(dir, 'db'))
  })
  afterEach(async () => {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const Round = z.object({ round: z.number().int(), hash: z.string() })

  it('round-trips validated JSON and keeps sublevels apart', async () => {
    await store.putJson('rounds', '0001', { round: 1, hash: 'ab' })
    expect(await store.getJson('rounds', '0001', Round)).toEqual({ round: 1, hash: 'ab' })
    expect(await store.getJson('meta', '0001', Round)).toBeUndefined()
  })

  it('reports a record that no longer matches its schema with a named error', async () => {
    await store.putJson('rounds', '0002', { round: 'two' })
    await expect(store.getJson('rounds', '0002', Round)).rejects.toMatchObject({ name: 'CorruptRecordError', message: expect.stringContaining('rounds/0002') })
    await store.putBytes('rounds', '0003', new Uint8Array([0xff, 0x00]))
    await expect(store.getJson('rounds', '0003', Round)).rejects.toMatchObject({ name: 'CorruptRecordError' })
  })

  it('commits a batch across sublevels atomically and persists it across reopen', async () => {
    await store.batch([
      { sublevel: 'rounds', type: 'put', key: '0001', value: { round: 1, hash: 'x' } },
      { sublevel: 'meta', type: 'put', key: 'lastRound', value: { round: 1, hash: 'x' } }
    ])
    await store.close()
    store = await openSiteStore(join(dir, 'db'))
    expect(await store.getJson('meta', 'lastRound', Round)).toEqual({ round: 1, hash: 'x' })
    const keys: string[] = []
    for await (const [k] of store.entries('rounds')) keys.push(k)
    expect(keys).toEqual(['0001'])
  })

  it('verifies blobs against their hash on every read', async () => {
    const bytes = new Uint8Array([1, 2, 3, 4])
    const hash = await store.putBlob(bytes)
    expect(hash).toBe(sha256Hex(bytes))
    expect(await store.getBlob(hash)).toEqual(bytes)
    await store.putBytes('blobs', hash, new Uint8Array([1, 2, 3, 5]))
    await expect(store.getBlob(hash)).rejects.toMatchObject({ name: 'CorruptRecordError', message: expect.stringContaining('is corrupt') })
  })

  it('refuses use after close with a named error', async () => {
    await store.close()
    await expect(store.putJson('meta', 'k', 1)).rejects.toMatchObject({ name: 'StoreClosedError' })
    store = await openSiteStore(join(dir, 'db'))
  })
})
