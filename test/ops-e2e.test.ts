/**
 * End to end with the real CLI in child processes: two sites are initialised
 * and started on loopback, run rounds and answer `status`; one is stopped
 * with SIGTERM and restarted and resumes from its last committed round;
 * /metrics parses as Prometheus text with our series and libp2p's; a
 * tampered audit record is named by `audit verify`.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { auditKey, type AuditRecord } from '../node/audit.ts'
import { fetchNodeStatus, readRuntimeFile, type NodeStatus } from '../node/service-files.ts'
import { encodeJson, openSiteStore } from '../node/store.ts'
import { forgemesh } from './support/cli.ts'
import { NodeProcess, freePort, until } from './support/ops-node.ts'

const ROUNDS = 10

/** Prometheus text format: `# HELP`/`# TYPE` comments and `name{labels} value` samples, nothing else. */
function parsePrometheus (text: string): { samples: Map<string, number>, types: Map<string, string> } {
  const samples = new Map<string, number>()
  const types = new Map<string, string>()
  for (const line of text.split('\n')) {
    if (line === '') continue
    const t = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line)
    if (t !== null) { types.set(t[1]!, t[2]!); continue }
    if (/^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* /.test(line)) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})?) (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$/.exec(line)
    if (m === null) throw new Error(`not Prometheus text: ${line}`)
    samples.set(m[1]!, Number(m[2]))
  }
  return { samples, types }
}

describe('two sites with the real CLI', () => {
  const cleanup: Array<() => Promise<unknown>> = []
  afterAll(async () => { for (const c of cleanup.reverse()) await c().catch(() => {}) })

  it('init, start, rounds, status, SIGTERM and resume, metrics, audit tamper', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fm-ops-e2e-'))
    cleanup.push(async () => { await rm(dir, { recursive: true, force: true }) })
    const [portA, portB] = [await freePort(), await freePort()]

    const a = JSON.parse((await forgemesh('init', join(dir, 'alpha'), '--listen', `/ip4/127.0.0.1/tcp/${portA}`, '--api-port', '0', '--json')).stdout) as { configFile: string, member: { peerId: string, addresses: string[] } }
    const b = JSON.parse((await forgemesh('init', join(dir, 'bravo'), '--listen', `/ip4/127.0.0.1/tcp/${portB}`, '--api-port', '0', '--psk', join(dir, 'alpha', 'federation.psk'), '--json')).stdout) as typeof a
    // Each operator adds the other site and the federation's settings to the template.
    const federation = { rounds: ROUNDS, localSteps: 2, minParticipants: 2, roundTimeoutMs: 10_000, heartbeatIntervalMs: 200, heartbeatTimeoutMs: 2_000, retryMs: 100 }
    for (const [self, other] of [[a, b], [b, a]] as const) {
      const config = JSON.parse(await readFile(self.configFile, 'utf8')) as Record<string, unknown>
      config.mesh = { ...(config.mesh as object), members: [other.member] }
      config.federation = federation
      config.learner = { kind: 'regression', dim: 4, samples: 64, seed: 3 }
      await writeFile(self.configFile, JSON.stringify(config, null, 2))
    }

    const start = async (cfg: string): Promise<NodeProcess> => {
      const p = new NodeProcess(cfg)
      cleanup.push(async () => { if (p.exitCode === null) { p.signal('SIGKILL'); await p.exited } })
      await p.event('node.started')
      return p
    }
    const statusOf = async (cfg: string): Promise<NodeStatus> => {
      const { apiUrl } = await readRuntimeFile(join(cfg, '..', 'node.json'))
      return await fetchNodeStatus(apiUrl)
    }
    const committed = async (cfg: string, atLeast: number): Promise<NodeStatus> =>
      await until(async () => { const s = await statusOf(cfg); return s.round.committed >= atLeast ? s : undefined }, `${cfg} at round ${atLeast}`, 60_000)

    let nodeA = await start(a.configFile)
    const nodeB = await start(b.configFile)

    // SIGTERM mid-federation, as soon as alpha has committed round 2: the
    // round in flight is finished or aborted, the store flushed, exit 0.
    await nodeA.waitFor(l => l.event === 'round.committed' && Number(l.round) >= 2, 'round 2 committed at alpha', 60_000)
    nodeA.signal('SIGTERM')
    expect(await nodeA.exited).toBe(0)
    const stoppedAt = Number((await nodeA.event('node.stopped')).committed)
    expect(stoppedAt).toBeGreaterThanOrEqual(2)
    expect(stoppedAt).toBeLessThan(ROUNDS)
    await expect(readFile(join(dir, 'alpha', 'node.json'))).rejects.toMatchObject({ code: 'ENOENT' })

    // Restarted, it resumes from its last committed round and the federation finishes.
    nodeA = await start(a.configFile)
    expect(Number((await nodeA.event('node.started')).resumedFrom)).toBe(stoppedAt)
    const endA = await committed(a.configFile, ROUNDS)
    await committed(b.configFile, ROUNDS)
    expect(endA.round).toEqual({ committed: ROUNDS, target: ROUNDS, resumedFrom: stoppedAt })

    // `forgemesh status` through the CLI, as an operator runs it; the nodes keep serving after the last round.
    const st = await forgemesh('status', '--config', a.configFile, '--json')
    expect(st.code).toBe(0)
    const sa = (JSON.parse(st.stdout) as { ok: true, status: NodeStatus }).status
    expect(sa.site).toBe('alpha')
    expect(sa.peerId).toBe(a.member.peerId)
    expect(sa.state).toBe('running')
    expect(sa.peers).toEqual([{ peerId: b.member.peerId, name: 'bravo', connected: true }])
    expect(sa.round).toEqual({ committed: ROUNDS, target: ROUNDS, resumedFrom: stoppedAt })
    expect([a.member.peerId, b.member.peerId]).toContain(sa.coordinator)
    expect(sa.backend).toBe('js (float64 regression)')
    expect(sa.privacy).toBeNull()
    expect(sa.eps).toBe(0)
    expect(sa.experts).toEqual([])
    expect(sa.addresses).toEqual([`/ip4/127.0.0.1/tcp/${portA}/p2p/${a.member.peerId}`])
    const pretty = await forgemesh('status', '--config', b.configFile)
    expect(pretty.code).toBe(0)
    expect(pretty.stdout).toMatch(new RegExp(`^site {9}bravo \\(running, up \\d+ s\\)\npeer id {6}${b.member.peerId}\nround {8}${ROUNDS} committed of ${ROUNDS}\n`))

    // /metrics: valid Prometheus text with our series and libp2p's own.
    const { apiUrl } = await readRuntimeFile(join(dir, 'alpha', 'node.json'))
    const res = await fetch(`${apiUrl}/metrics`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toContain('text/plain')
    const { samples, types } = parsePrometheus(await res.text())
    expect(types.get('forgemesh_rounds_committed_total')).toBe('counter')
    // This process committed the rounds after its restart (catch-up included).
    expect(samples.get('forgemesh_rounds_committed_total{site="alpha"}')).toBe(ROUNDS - stoppedAt)
    expect(samples.get(`forgemesh_bytes_sent_total{peer="${b.member.peerId}",site="alpha"}`)).toBeGreaterThan(0)
    expect(samples.get(`forgemesh_bytes_received_total{peer="${b.member.peerId}",site="alpha"}`)).toBeGreaterThan(0)
    expect(samples.get('forgemesh_peers_connected{site="alpha"}')).toBe(1)
    expect(types.get('forgemesh_update_latency_seconds')).toBe('histogram')
    expect(samples.get('forgemesh_update_latency_seconds_count{site="alpha"}')).toBeGreaterThan(0)
    expect(samples.get('forgemesh_training_samples_per_second{site="alpha"}')).toBeGreaterThan(0)
    expect(types.get('forgemesh_privacy_epsilon_spent')).toBe('gauge')
    expect([...types.keys()].filter(n => n.startsWith('libp2p_')).length).toBeGreaterThan(0)

    // SIGINT (Ctrl-C at a terminal) is the same clean stop.
    nodeA.signal('SIGTERM')
    nodeB.signal('SIGINT')
    expect(await nodeA.exited).toBe(0)
    expect(await nodeB.exited).toBe(0)
    expect((await nodeB.event('node.stopped')).reason).toBe('signal SIGINT')

    // The audit trail: both starts and stops, every committed round once, intact.
    const list = await forgemesh('audit', 'list', '--config', a.configFile, '--json')
    const records = list.stdout.trim().split('\n').map(l => JSON.parse(l) as AuditRecord)
    expect(records.filter(r => r.kind === 'node:start').map(r => r.data.resumedFrom)).toEqual([0, stoppedAt])
    expect(records.filter(r => r.kind === 'node:stop')).toHaveLength(2)
    const rounds = records.filter(r => r.kind === 'round:committed').map(r => r.data.round)
    expect(rounds).toEqual(Array.from({ length: ROUNDS }, (_, i) => i + 1))
    expect(records.some(r => r.kind === 'peer:joined' && r.data.peer === b.member.peerId)).toBe(true)
    const ok = await forgemesh('audit', 'verify', '--config', a.configFile)
    expect(ok.code).toBe(0)
    expect(ok.stdout).toMatch(new RegExp(`^audit log intact: ${records.length} records, head [0-9a-f]{64}\\n$`))

    // A compliance officer's check catches a record edited on disk, and names it.
    const victim = records.find(r => r.kind === 'round:committed' && r.data.round === 3)!
    const store = await openSiteStore(join(dir, 'alpha', 'store'))
    await store.putBytes('audit', auditKey(victim.seq), encodeJson({ ...victim, data: { ...victim.data, participants: 1 } }))
    await store.close()
    const bad = await forgemesh('audit', 'verify', '--config', a.configFile, '--json')
    expect(bad.code).toBe(1)
    expect(JSON.parse(bad.stdout)).toMatchObject({ ok: false, problems: [{ seq: victim.seq, problem: 'edited', detail: `record ${victim.seq} (round:committed) does not match its own hash` }] })
  }, 180_000)
})
