/**
 * The service in-process (one site, no other members): a non-loopback API
 * demands its bearer token, `forgemesh status` sends it, stop() is idempotent
 * and leaves the store closed with `node:stop` as the audit log's last record.
 */
import { execFile } from 'node:child_process'
import { createServer } from 'node:net'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { createSilentLogger } from '../coordinator/components.ts'
import { createAuditLog, verifyAuditLog, type AuditRecord } from '../node/audit.ts'
import { systemClock } from '../node/components.ts'
import { loadSiteConfig } from '../node/config.ts'
import { startSiteService } from '../node/service.ts'
import { initSite } from '../node/site-setup.ts'
import { openSiteStore } from '../node/store.ts'
import { CLI } from './support/cli.ts'

const exec = promisify(execFile)

describe('site service in-process', () => {
  let dir: string
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  it('guards a non-loopback API with its token, runs rounds alone, and stops cleanly once', async () => {
    dir = await mkdtemp(join(tmpdir(), 'fm-ops-service-'))
    const site = await initSite({ dir: join(dir, 'solo'), listen: ['/ip4/127.0.0.1/tcp/0'], apiPort: 0 }, { clock: systemClock })
    const token = 'fm-test-token-0123456789abcdef'
    await writeFile(join(dir, 'solo', 'api.token'), token + '\n', { mode: 0o600 })
    const raw = JSON.parse(await readFile(site.configFile, 'utf8')) as Record<string, unknown>
    raw.api = { host: '0.0.0.0', port: 0, tokenFile: 'api.token' }
    raw.federation = { rounds: 3, localSteps: 1, heartbeatIntervalMs: 100, heartbeatTimeoutMs: 1000, roundTimeoutMs: 5000 }
    await writeFile(site.configFile, JSON.stringify(raw))

    const config = await loadSiteConfig(site.configFile)
    const service = await startSiteService(config, { clock: systemClock, logger: createSilentLogger() })
    const url = service.apiUrl().replace('0.0.0.0', '127.0.0.1')
    expect((await fetch(`${url}/status`)).status).toBe(401)
    expect((await fetch(`${url}/status`, { headers: { authorization: 'Bearer wrong-token-0123456789' } })).status).toBe(401)

    // Alone in its federation, the site coordinates and commits its own rounds.
    const deadline = Date.now() + 30_000
    while ((await service.status()).round.committed < 3) {
      if (Date.now() > deadline) throw new Error('3 rounds not committed within 30 s')
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    const { stdout } = await exec(process.execPath, [CLI, 'status', '--url', url, '--token-file', join(dir, 'solo', 'api.token'), '--json'])
    const s = (JSON.parse(stdout) as { status: { peerId: string, round: unknown, coordinator: string, peers: unknown[] } }).status
    expect(s.peerId).toBe(site.peerId)
    expect(s.round).toEqual({ committed: 3, target: 3, resumedFrom: 0 })
    expect(s.coordinator).toBe(site.peerId)
    expect(s.peers).toEqual([])
    // Through the config, the CLI finds the token file itself.
    const viaConfig = await exec(process.execPath, [CLI, 'status', '--config', site.configFile, '--json'])
    expect(JSON.parse(viaConfig.stdout)).toMatchObject({ ok: true, status: { site: 'solo' } })

    await Promise.all([service.stop('test'), service.stop('again')])
    expect(await service.stopped).toEqual({ code: 0 })
    await expect(readFile(config.runtimeFile)).rejects.toMatchObject({ code: 'ENOENT' })

    // The store was closed (this process can open it again) and the log ends with one node:stop.
    const store = await openSiteStore(config.storeDir)
    try {
      const records: AuditRecord[] = []
      for await (const r of createAuditLog(store, { clock: systemClock }).records()) records.push(r)
      expect(records.map(r => r.kind)).toEqual(['site:init', 'node:start', 'round:committed', 'round:committed', 'round:committed', 'node:stop'])
      expect(records.at(-1)!.data).toEqual({ reason: 'test', committed: 3 })
      expect((await verifyAuditLog(store)).ok).toBe(true)
    } finally {
      await store.close()
    }
  }, 60_000)

  it('a start that fails (API port taken) releases the store and audits why', async () => {
    const site = await initSite({ dir: join(dir, 'busy'), listen: ['/ip4/127.0.0.1/tcp/0'] }, { clock: systemClock })
    const blocker = createServer()
    await new Promise<void>(resolve => { blocker.listen(0, '127.0.0.1', resolve) })
    const port = (blocker.address() as { port: number }).port
    try {
      const raw = JSON.parse(await readFile(site.configFile, 'utf8')) as Record<string, unknown>
      raw.api = { port }
      await writeFile(site.configFile, JSON.stringify(raw))
      const config = await loadSiteConfig(site.configFile)
      await expect(startSiteService(config, { clock: systemClock, logger: createSilentLogger() })).rejects.toMatchObject({ code: 'EADDRINUSE' })
      const store = await openSiteStore(config.storeDir)
      try {
        const records: AuditRecord[] = []
        for await (const r of createAuditLog(store, { clock: systemClock }).records()) records.push(r)
        expect(records.map(r => r.kind)).toEqual(['site:init', 'node:start', 'node:stop'])
        expect(records[2]!.data).toEqual({ reason: `start failed: listen EADDRINUSE: address already in use 127.0.0.1:${port}`, committed: 0 })
      } finally {
        await store.close()
      }
      await expect(readFile(config.runtimeFile)).rejects.toMatchObject({ code: 'ENOENT' })
    } finally {
      blocker.close()
    }
  })
})
