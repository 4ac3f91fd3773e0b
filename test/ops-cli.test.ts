/** The real `forgemesh init | audit | status | node` in child processes (no running mesh needed here). */
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { auditKey, type AuditRecord } from '../node/audit.ts'
import { encodeJson, openSiteStore } from '../node/store.ts'
import { forgemesh } from './support/cli.ts'

const lastJson = (s: string): Record<string, unknown> => JSON.parse(s.trim().split('\n').at(-1)!) as Record<string, unknown>

describe('forgemesh init', () => {
  let dir: string
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'fm-ops-cli-')) })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  it('creates a site: key and federation key 0600, a valid config, the audit log\'s first record', async () => {
    const r = await forgemesh('init', join(dir, 'Alpha'), '--listen', '/ip4/127.0.0.1/tcp/4711', '--api-port', '0', '--json')
    expect(r.code).toBe(0)
    const out = lastJson(r.stdout) as { ok: boolean, site: string, peerId: string, configFile: string, pskImported: boolean, member: unknown }
    expect(out.ok).toBe(true)
    expect(out.site).toBe('alpha')
    expect(out.peerId).toMatch(/^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$/)
    expect(out.pskImported).toBe(false)
    expect(out.member).toEqual({ name: 'alpha', peerId: out.peerId, addresses: [`/ip4/127.0.0.1/tcp/4711/p2p/${out.peerId}`] })
    for (const f of ['identity.json', 'federation.psk']) expect((await stat(join(dir, 'Alpha', f))).mode & 0o777).toBe(0o600)
    expect(await readFile(join(dir, 'Alpha', 'federation.psk'), 'utf8')).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}$/)
    const config = JSON.parse(await readFile(out.configFile, 'utf8')) as { site: string, api: { port: number }, mesh: { listen: string[] } }
    expect(config.site).toBe('alpha')
    expect(config.api.port).toBe(0)
    expect(config.mesh.listen).toEqual(['/ip4/127.0.0.1/tcp/4711'])

    const list = await forgemesh('audit', 'list', '--config', out.configFile, '--json')
    expect(list.code).toBe(0)
    const records = list.stdout.trim().split('\n').map(l => JSON.parse(l) as AuditRecord)
    expect(records.map(x => [x.seq, x.kind, x.data])).toEqual([[1, 'site:init', { site: 'alpha', peerId: out.peerId, pskImported: false }]])
  })

  it('imports a federation key byte for byte; refuses a folder that already holds a site (exit 2)', async () => {
    const r = await forgemesh('init', join(dir, 'bravo'), '--psk', join(dir, 'Alpha', 'federation.psk'), '--json')
    expect(r.code).toBe(0)
    expect(lastJson(r.stdout).pskImported).toBe(true)
    expect(await readFile(join(dir, 'bravo', 'federation.psk'))).toEqual(await readFile(join(dir, 'Alpha', 'federation.psk')))
    const again = await forgemesh('init', join(dir, 'bravo'))
    expect(again.code).toBe(2)
    expect(again.stderr).toBe(`forgemesh: ${join(dir, 'bravo', 'forgemesh.json')} already exists: ${join(dir, 'bravo')} already holds a site; nothing was changed\n`)
  })

  it('a bad imported key or site name is bad input (exit 2) and leaves nothing behind', async () => {
    await writeFile(join(dir, 'bad.psk'), 'not a key')
    const r = await forgemesh('init', join(dir, 'charlie'), '--psk', join(dir, 'bad.psk'), '--json')
    expect(r.code).toBe(2)
    expect(lastJson(r.stdout)).toEqual({ ok: false, error: { name: 'PskFileError', message: `${join(dir, 'bad.psk')} is not a swarm key (expected /key/swarm/psk/1.0.0/, /base16/ and 64 lowercase hex digits)` } })
    await expect(stat(join(dir, 'charlie'))).rejects.toMatchObject({ code: 'ENOENT' })
    const name = await forgemesh('init', join(dir, 'delta'), '--site', 'Not OK')
    expect(name.code).toBe(2)
    expect(name.stderr).toBe('forgemesh: the new config: invalid site config:\n  site: expected a lower-case name of letters, digits and dashes, got "Not OK"\n')
  })
})

describe('forgemesh audit verify', () => {
  let dir: string
  let config: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fm-ops-audit-'))
    const r = await forgemesh('init', join(dir, 'site'), '--json')
    config = lastJson(r.stdout).configFile as string
  })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  it('passes an intact log and names an edited record (exit 1)', async () => {
    const ok = await forgemesh('audit', 'verify', '--config', config, '--json')
    expect(ok.code).toBe(0)
    expect(lastJson(ok.stdout)).toMatchObject({ ok: true, records: 1, problems: [] })

    const store = await openSiteStore(join(dir, 'site', 'store'))
    const first = JSON.parse(Buffer.from((await store.getBytes('audit', auditKey(1)))!).toString()) as AuditRecord
    await store.putBytes('audit', auditKey(1), encodeJson({ ...first, data: { ...first.data, site: 'mallory' } }))
    // While this process holds the store, the CLI says so instead of a LevelDB lock error.
    const busy = await forgemesh('audit', 'verify', '--config', config)
    expect(busy.code).toBe(1)
    expect(busy.stderr).toBe(`forgemesh: ${join(dir, 'site', 'store')} is in use by another process (a running node?): stop it first\n`)
    await store.close()

    const bad = await forgemesh('audit', 'verify', '--store', join(dir, 'site', 'store'))
    expect(bad.code).toBe(1)
    expect(bad.stdout).toBe('audit log BROKEN: 1 problem in 1 records\n  record 1: edited: record 1 (site:init) does not match its own hash\n')
  })

  it('usage errors exit 2', async () => {
    const both = await forgemesh('audit', 'verify')
    expect(both.code).toBe(2)
    expect(both.stderr).toBe('forgemesh: give exactly one of --config FILE or --store DIR\n')
    const missing = await forgemesh('audit', 'verify', '--store', join(dir, 'nowhere'))
    expect(missing.code).toBe(2)
    expect(missing.stderr).toBe(`forgemesh: ${join(dir, 'nowhere')} is not a site store (no LevelDB there); run 'forgemesh init' first\n`)
  })
})

describe('forgemesh node start and status without a running node', () => {
  let dir: string
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'fm-ops-bad-')) })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  it('a bad config exits 2 with a message naming the field', async () => {
    const file = join(dir, 'forgemesh.json')
    await writeFile(file, JSON.stringify({ site: 'alpha', federation: { localSteps: -5 }, mesh: { members: [{ peerId: 'bob' }] } }))
    const r = await forgemesh('node', 'start', '--config', file)
    expect(r.code).toBe(2)
    expect(r.stderr).toBe(`forgemesh: ${file}: invalid site config:\n  mesh.members[0].peerId: expected a libp2p peer id (12D3KooW…), got "bob"\n  federation.localSteps: expected a number > 0, got -5\n`)
    const j = await forgemesh('node', 'start', '--config', file, '--json')
    expect(j.code).toBe(2)
    expect(lastJson(j.stdout)).toMatchObject({ ok: false, error: { name: 'ConfigError' } })
  })

  it('a site that was never initialised exits 2 naming identityFile', async () => {
    const file = join(dir, 'fresh.json')
    await writeFile(file, JSON.stringify({ site: 'fresh' }))
    const r = await forgemesh('node', 'start', '--config', file)
    expect(r.code).toBe(2)
    expect(r.stderr).toBe(`forgemesh: identityFile: ${join(dir, 'identity.json')} does not exist; run 'forgemesh init' to create the site (a new key would be a new member)\n`)
  })

  it('status with no node running exits 1 and says so', async () => {
    const file = join(dir, 'fresh.json')
    const r = await forgemesh('status', '--config', file)
    expect(r.code).toBe(1)
    expect(r.stderr).toBe(`forgemesh: no node is running for this config (${join(dir, 'node.json')} is missing): start one with 'forgemesh node start'\n`)
  })

  it('every command has help (exit 0) and bad usage exits 2', async () => {
    const cases = [['init', '--help'], ['node', 'start', '--help'], ['status', '--help'], ['audit', 'verify', '--help'], ['audit', 'list', '--help']]
    const runs = await Promise.all(cases.map(async args => await forgemesh(...args)))
    runs.forEach((r, i) => {
      expect(r.code, cases[i]!.join(' ')).toBe(0)
      expect(r.stdout, cases[i]!.join(' ')).toMatch(/^usage: forgemesh /)
    })
    const r = await forgemesh('node', 'start', '--log-level', 'chatty')
    expect(r.code).toBe(2)
    expect(r.stderr).toBe('forgemesh: --log-level: expected debug, info, warn or error, got \'chatty\'\n')
  })
})
