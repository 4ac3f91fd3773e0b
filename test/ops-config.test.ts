import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { exitCodeOf } from '../bin/usage.ts'
import { MAX_CONFIG_BYTES, loadSiteConfig, memberAddresses, parseSiteConfig } from '../node/config.ts'
import { DatasetSchemaError, SyntheticSchemaError } from '../node/errors.ts'
import { SITE_CONFIG_SCHEMA_PATH, siteConfigJsonSchemaText } from '../node/site-config-schema.ts'

const PEER_A = '12D3KooWJ5QfCiL2moKbofBnXrgm9AeMtwHHSMFkC1f8pmEVEvaM'
const PEER_B = '12D3KooWRZrVXzspjkVSzZX2QEK1TqJDY427P5ymyeaKVAbwW9zu'

function errorOf (fn: () => unknown): Error {
  try { fn() } catch (err) { return err as Error }
  throw new Error('expected a throw')
}

describe('site config schema', () => {
  it('the committed JSON Schema is the one generated from the zod schema', async () => {
    expect(await readFile(SITE_CONFIG_SCHEMA_PATH, 'utf8')).toBe(siteConfigJsonSchemaText())
  })

  it('fills defaults for everything but the site name', () => {
    const c = parseSiteConfig({ site: 'alpha' })
    expect(c.identityFile).toBe('identity.json')
    expect(c.storeDir).toBe('store')
    expect(c.mesh).toEqual({ listen: ['/ip4/0.0.0.0/tcp/4100'], pskFile: 'federation.psk', insecureOpenMesh: false, members: [], priority: 0 })
    expect(c.federation.strategy).toEqual({ kind: 'fedavg', serverLr: 1 })
    expect(c.federation.quorumFraction).toBe(0.5)
    expect(c.learner).toEqual({ kind: 'regression', dim: 8, samples: 256, seed: 1, lr: 0.1 })
    expect(c.api).toEqual({ host: '127.0.0.1', port: 7400 })
    expect(c.log).toEqual({ level: 'info', format: 'auto' })
  })

  it('names every bad field with its path, what was expected and what was given', () => {
    const err = errorOf(() => parseSiteConfig({
      site: 'alpha',
      mesh: { members: [{ peerId: PEER_B }, { peerId: 'bob', addresses: ['tcp:4100'] }] },
      federation: { quorumFraction: 0, localSteps: 2.5, strategy: { kind: 'fedmagic' } },
      api: { port: -5 },
      extra: true
    }, 'site.json'))
    expect(err.name).toBe('ConfigError')
    expect(err.message.split('\n')).toEqual([
      'site.json: invalid site config:',
      '  mesh.members[1].peerId: expected a libp2p peer id (12D3KooW…), got "bob"',
      '  mesh.members[1].addresses[0]: expected a multiaddr such as /ip4/10.0.0.2/tcp/4100, got "tcp:4100"',
      '  federation.localSteps: expected an integer, got 2.5',
      '  federation.strategy.kind: Invalid discriminator value. Expected \'fedavg\' | \'fedadam\' | \'fedyogi\' | \'diloco\' | \'median\' | \'trimmed-mean\' | \'krum\' | \'multi-krum\', got "fedmagic"',
      '  federation.quorumFraction: expected a number > 0, got 0',
      '  api.port: expected a number ≥ 0, got -5',
      '  (root): unknown field \'extra\''
    ])
    expect(exitCodeOf(err)).toBe(2)
  })

  it('cross-field rules are reported at the field to change', () => {
    const lines = (input: unknown): string[] => errorOf(() => parseSiteConfig(input)).message.split('\n').slice(1).map(l => l.trim())
    expect(lines({ site: 'a', api: { host: '0.0.0.0' } })).toEqual(['api.tokenFile: api.host 0.0.0.0 is not loopback: a bearer token file is required, got nothing'])
    expect(lines({ site: 'a', federation: { heartbeatIntervalMs: 2000, heartbeatTimeoutMs: 2000 } }))
      .toEqual(['federation.heartbeatTimeoutMs: must be longer than heartbeatIntervalMs (2000), or every member looks dead between two greetings, got 2000'])
    expect(lines({ site: 'a', mesh: { pskFile: null } })).toEqual(['mesh.pskFile: a federation key file is required unless mesh.insecureOpenMesh is true, got null'])
    expect(lines({ site: 'a', mesh: { members: [{ peerId: PEER_A }, { peerId: PEER_A }] } })).toEqual([`mesh.members[1].peerId: duplicate member, got "${PEER_A}"`])
    expect(lines({ site: 'a', mesh: { members: [{ peerId: PEER_A, addresses: [`/ip4/10.0.0.2/tcp/4100/p2p/${PEER_B}`] }] } }))
      .toEqual([`mesh.members[0].addresses[0]: address ends in /p2p/${PEER_B}, not the member's peer id ${PEER_A}, got "/ip4/10.0.0.2/tcp/4100/p2p/${PEER_B.slice(0, 30)}..."`])
  })

  it('member addresses get /p2p/<peer id> appended when it is missing', () => {
    const c = parseSiteConfig({ site: 'a', mesh: { members: [{ peerId: PEER_B, addresses: ['/ip4/10.0.0.2/tcp/4100', `/dns4/b.example/tcp/4100/p2p/${PEER_B}`] }] } })
    expect(memberAddresses(c.mesh.members[0]!)).toEqual([`/ip4/10.0.0.2/tcp/4100/p2p/${PEER_B}`, `/dns4/b.example/tcp/4100/p2p/${PEER_B}`])
  })

  it('schema-file errors of other areas are bad input too (exit 2)', () => {
    expect(exitCodeOf(new DatasetSchemaError('x'))).toBe(2)
    expect(exitCodeOf(new SyntheticSchemaError('x'))).toBe(2)
    expect(exitCodeOf(new Error('x'))).toBe(1)
  })
})

describe('loadSiteConfig', () => {
  let dir: string
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'fm-ops-config-')) })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  it('resolves every path against the config file\'s folder', async () => {
    const file = join(dir, 'forgemesh.json')
    await writeFile(file, JSON.stringify({ site: 'alpha', identityFile: 'keys/id.json', storeDir: '/var/lib/fm', mesh: { pskFile: '../fed.psk' }, api: { tokenFile: 'token' } }))
    const c = await loadSiteConfig(file)
    expect(c.source).toBe(file)
    expect(c.identityFile).toBe(join(dir, 'keys/id.json'))
    expect(c.storeDir).toBe('/var/lib/fm')
    expect(c.runtimeFile).toBe(join(dir, 'node.json'))
    expect(c.mesh.pskFile).toBe(join(dir, '..', 'fed.psk'))
    expect(c.api.tokenFile).toBe(join(dir, 'token'))
  })

  it('a missing, oversized or non-JSON file is a ConfigError naming the file', async () => {
    const missing = join(dir, 'nope.json')
    await expect(loadSiteConfig(missing)).rejects.toMatchObject({ name: 'ConfigError', message: `${missing}: cannot read the config file (ENOENT)` })
    const big = join(dir, 'big.json')
    await writeFile(big, ' '.repeat(MAX_CONFIG_BYTES + 1))
    await expect(loadSiteConfig(big)).rejects.toMatchObject({ name: 'ConfigError', message: `${big}: config file is ${MAX_CONFIG_BYTES + 1} bytes, more than the ${MAX_CONFIG_BYTES} allowed` })
    const bad = join(dir, 'bad.json')
    await writeFile(bad, '{ "site": ')
    await expect(loadSiteConfig(bad)).rejects.toThrow(new RegExp(`^${bad}: not valid JSON \\(`))
  })
})
