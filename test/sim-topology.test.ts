import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { checkPrivacyComposition } from '../coordinator/dp/settings.ts'
import { TOPOLOGY_SCHEMA_PATH, topologyJsonSchemaText } from '../sim/topology-schema.ts'
import { MAX_TOPOLOGY_BYTES, executionOf, expertCount, loadTopology, parseTopology, resolveLink, sharedParameterCount } from '../sim/topology.ts'

const bundled = (name: string): string => fileURLToPath(new URL(`../sim/topologies/${name}.json`, import.meta.url))

function errorOf (fn: () => unknown): Error {
  try { fn() } catch (err) { return err as Error }
  throw new Error('expected a throw')
}

describe('bundled topologies', () => {
  it('three-sites: three sites, MNIST split by label, one expert each', async () => {
    const t = await loadTopology(bundled('three-sites'))
    expect(t.sites.map(s => s.name)).toEqual(['alpha', 'bravo', 'charlie'])
    expect(t.data.partition).toEqual({ kind: 'labels' })
    expect(t.sites.flatMap(s => s.labels)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(t.sites.map(s => s.experts)).toEqual([[0], [1], [2]])
  })

  it('eu-us-asia: WAN latencies between 80 and 250 ms at 100 Mbit/s', async () => {
    const t = await loadTopology(bundled('eu-us-asia'))
    const wan = new Set<number>()
    for (const a of t.sites) {
      for (const b of t.sites) {
        const l = resolveLink(t, a.name, b.name)
        expect(l.bandwidthMbps).toBe(100)
        if (a.region !== b.region) wan.add(l.latencyMs)
      }
    }
    expect([...wan].sort((x, y) => x - y)).toEqual([80, 150, 250])
  })

  it('space-agencies: five members, one 600 ms link, one joins late and one leaves', async () => {
    const t = await loadTopology(bundled('space-agencies'))
    expect(t.sites).toHaveLength(5)
    const latencies = t.sites.flatMap(a => t.sites.filter(b => a.name < b.name).map(b => resolveLink(t, a.name, b.name).latencyMs))
    expect(latencies.filter(l => l === 600)).toHaveLength(1)
    expect(t.faults.map(f => f.kind).sort()).toEqual(['join', 'leave'])
  })

  it('churn-32: 32 sites, about 30% of them crash and restart', async () => {
    const t = await loadTopology(bundled('churn-32'))
    expect(t.sites).toHaveLength(32)
    const crashes = t.faults.filter(f => f.kind === 'crash')
    expect(new Set(crashes.map(f => f.site)).size).toBe(10)
    for (const c of crashes) expect(c.restartAfterS).toBeGreaterThan(0)
  })

  it('memory-64: 64 sites in this process on the in-memory transport, one expert each', async () => {
    const t = await loadTopology(bundled('memory-64'))
    expect(t.sites).toHaveLength(64)
    expect([t.transport, executionOf(t)]).toEqual(['memory', 'inline'])
    expect(t.sites.map(s => s.experts)).toEqual(Array.from({ length: 64 }, (_, i) => [i]))
    expect(t.faults).toEqual([])
  })

  it('every bundled topology\'s privacy settings compose with its strategy and compression', async () => {
    for (const name of ['three-sites', 'eu-us-asia', 'space-agencies', 'churn-32', 'memory-64']) {
      const t = await loadTopology(bundled(name))
      const vectorLength = sharedParameterCount(t)
      expect(vectorLength).toBe(784 * t.federation.model.width + t.federation.model.width * (1 + expertCount(t) + 10) + expertCount(t) + 10)
      const plan = checkPrivacyComposition({ privacy: t.federation.privacy, sites: t.sites.length, vectorLength, strategy: t.federation.strategy, compression: t.federation.compression })
      expect(plan.secureAggregation !== undefined).toBe(name === 'space-agencies')
    }
  })
})

describe('topology JSON Schema', () => {
  it('the committed sim/topology.schema.json is the one generated from the zod schema', async () => {
    // Regenerate with: node --import tsx sim/topology-schema.ts
    expect(await readFile(TOPOLOGY_SCHEMA_PATH, 'utf8')).toBe(topologyJsonSchemaText())
  })

  it('documents fields and leaves defaulted fields optional', () => {
    const schema = JSON.parse(topologyJsonSchemaText()) as { required: string[], properties: Record<string, { description?: string }> }
    expect(schema.required).toEqual(['name', 'sites'])
    expect(schema.properties.transport?.description).toMatch(/memory/)
  })
})

describe('topology validation', () => {
  const minimal = { name: 'tiny', sites: [{ name: 'a' }, { name: 'b' }] }

  it('fills defaults', () => {
    const t = parseTopology(minimal)
    expect(t.seed).toBe(1)
    expect(t.transport).toBe('tcp')
    expect(t.federation.rounds).toBe(20)
    expect(t.sites[0]!.roles).toEqual(['trainer', 'coordinator'])
    expect(resolveLink(t, 'a', 'b')).toEqual({ latencyMs: 0, jitterMs: 0, bandwidthMbps: null, loss: 0 })
  })

  it('runs sites in child processes over tcp and in this process over the memory transport, unless told', () => {
    expect(executionOf(parseTopology(minimal))).toBe('process')
    expect(executionOf(parseTopology({ ...minimal, transport: 'memory' }))).toBe('inline')
    expect(executionOf(parseTopology({ ...minimal, execution: 'inline' }))).toBe('inline')
    expect(parseTopology(minimal).execution).toBeUndefined()
    const schema = JSON.parse(topologyJsonSchemaText()) as { properties: Record<string, { enum?: string[], description?: string }> }
    expect(schema.properties.execution?.enum).toEqual(['process', 'inline'])
    expect(schema.properties.execution?.description).toMatch(/child process/)
  })

  it('refuses the memory transport with process execution: it connects nodes of one process only', () => {
    const err = errorOf(() => parseTopology({ ...minimal, transport: 'memory', execution: 'process' }, 'm.json'))
    expect(err.name).toBe('TopologyError')
    expect(err.message).toBe('m.json: invalid topology:\n  execution: the memory transport connects nodes of one process only: use "execution": "inline" (or the tcp transport), got "process"')
  })

  it('names the field path and the bad value', () => {
    const err = errorOf(() => parseTopology({ ...minimal, links: { pairs: [{ between: ['a', 'b'], latencyMs: -5 }] } }, 'x.json'))
    expect(err.name).toBe('TopologyError')
    expect(err.message).toBe('x.json: invalid topology:\n  links.pairs[0].latencyMs: expected a number ≥ 0, got -5')
  })

  it('reports unknown sites, duplicate names, foreign labels and doubly owned experts at their paths', () => {
    const err = errorOf(() => parseTopology({
      name: 'bad',
      data: { partition: { kind: 'labels' } },
      sites: [{ name: 'a', labels: [0, 12], experts: [0] }, { name: 'a', labels: [1], experts: [0] }],
      faults: [{ kind: 'crash', site: 'zed', at: { round: 2 } }]
    }))
    expect(err.message.split('\n').slice(1).map(l => l.trim())).toEqual([
      "sites[1].name: duplicate site name 'a', got \"a\"",
      'sites[0].labels[1]: label 12 is not below federation.model.classes (10), got 12',
      "sites[1].experts[0]: expert 0 is already owned by site 'a', got 0",
      "faults[0].site: unknown site 'zed', got \"zed\""
    ])
  })

  it('rejects privacy settings that cannot hold together, with the reason', () => {
    const err = errorOf(() => parseTopology({ ...minimal, federation: { privacy: { dp: { mode: 'site', noiseMultiplier: 1 } } } }))
    expect(err.message).toContain("federation.privacy: dp.mode 'site' needs privacy.clipNorm")
  })

  it('rejects unknown fields (typos) and wrong enums', () => {
    const err = errorOf(() => parseTopology({ ...minimal, transport: 'udp', sites: [{ name: 'a', latency: 3 }] }))
    expect(err.message).toContain('transport: expected one of "tcp", "memory", got "udp"')
    expect(err.message).toContain("sites[0]: unknown field 'latency'")
  })

  it('resolves links: pair rule over region rule over the default, symmetric', () => {
    const t = parseTopology({
      name: 'links',
      sites: [{ name: 'a', region: 'eu' }, { name: 'b', region: 'us' }, { name: 'c', region: 'us' }],
      links: {
        default: { latencyMs: 1, bandwidthMbps: 1000 },
        regions: [{ between: ['us', 'eu'], latencyMs: 80, jitterMs: 4 }],
        pairs: [{ between: ['c', 'a'], bandwidthMbps: null, loss: 0.5 }]
      }
    })
    expect(resolveLink(t, 'a', 'b')).toEqual({ latencyMs: 80, jitterMs: 4, bandwidthMbps: 1000, loss: 0 })
    expect(resolveLink(t, 'b', 'a')).toEqual(resolveLink(t, 'a', 'b'))
    expect(resolveLink(t, 'a', 'c')).toEqual({ latencyMs: 1, jitterMs: 0, bandwidthMbps: null, loss: 0.5 })
    expect(resolveLink(t, 'b', 'c')).toEqual({ latencyMs: 1, jitterMs: 0, bandwidthMbps: 1000, loss: 0 })
  })
})

describe('loadTopology', () => {
  let dir: string
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'fm-topo-')) })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  it('resolves relative data paths against the file\'s folder', async () => {
    const file = join(dir, 'own.json')
    await writeFile(file, JSON.stringify({
      name: 'own',
      data: { source: { kind: 'table', file: 'data/rows.csv', schema: '/etc/schema.json' } },
      sites: [{ name: 'a', dataFile: '../a.csv' }]
    }))
    const t = await loadTopology(file)
    expect(t.data.source).toEqual({ kind: 'table', file: join(dir, 'data/rows.csv'), schema: '/etc/schema.json' })
    expect(t.sites[0]!.dataFile).toBe(join(dir, '../a.csv'))
  })

  it('names the file for a missing file, bad JSON and an oversized file', async () => {
    await expect(loadTopology(join(dir, 'none.json'))).rejects.toMatchObject({ name: 'TopologyError', message: `${join(dir, 'none.json')}: cannot read topology file (ENOENT)` })
    const bad = join(dir, 'bad.json')
    await writeFile(bad, '{ "name": ')
    await expect(loadTopology(bad)).rejects.toMatchObject({ name: 'TopologyError', message: expect.stringMatching(new RegExp(`^${bad}: not valid JSON`)) })
    const big = join(dir, 'big.json')
    await writeFile(big, ' '.repeat(MAX_TOPOLOGY_BYTES + 1))
    await expect(loadTopology(big)).rejects.toMatchObject({ name: 'TopologyError', message: `${big}: topology file is ${MAX_TOPOLOGY_BYTES + 1} bytes, more than the ${MAX_TOPOLOGY_BYTES} allowed` })
  })
})

describe('site settings of a simulated fleet', () => {
  it('greets every 500 ms up to 10 sites, then keeps the machine at 200 greetings a second', async () => {
    const { siteSettings } = await import('../sim/site-settings.ts')
    const { scaleTopology } = await import('../sim/scale.ts')
    const at = (sites: number): [number, number] => {
      const s = siteSettings(scaleTopology({ sites, transport: 'memory', rounds: 1, rowsPerSite: 10, testLimit: 10, seed: 1 }))
      return [s.heartbeatIntervalMs!, s.heartbeatTimeoutMs!]
    }
    expect(at(3)).toEqual([500, 4_000])
    expect(at(10)).toEqual([500, 4_000])
    // N(N-1) greetings per interval: 11·10/200 s, 32·31/200 s, 64·63/200 s.
    expect(at(11)).toEqual([550, 4_400])
    expect(at(32)).toEqual([4_960, 39_680])
    expect(at(64)).toEqual([20_160, 161_280])
  })
})
