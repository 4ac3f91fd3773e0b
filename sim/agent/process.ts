/**
 * Process execution: every site in a child process of its own
 * (sim/agent/child.ts), so the sites' training and their share of the mesh's
 * work spread over every core, and each site's peak RSS is its own
 * process's, measured. A crash is a SIGKILL (no goodbye, no flush); a restart
 * is a new child on the same store folder. Before a child ends, its peak RSS
 * (the kernel's high-water mark, VmHWM) and its unsent byte counts are taken.
 * No child outlives the run: stop, abort, an error and this process's exit
 * all kill them, and a child whose channel closes exits on its own.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { LogLevel, Logger } from '../../coordinator/components.ts'
import { generatePsk } from '../../node/mesh/psk.ts'
import { TopologyError } from '../errors.ts'
import { simIdentity } from '../fleet.ts'
import type { AgentFleetInit } from './inline.ts'
import { FromChild, type ChildInit, type ToChild } from './ipc.ts'
import { OP_NAMES, type AgentEvents, type AgentFleet, type OpName, type SiteAgent, type SiteOps, type SiteState } from './types.ts'

const CHILD = fileURLToPath(new URL('./child.ts', import.meta.url))
/** Children preparing at once (data share, tfjs backend, learner): more only queue on the same cores. */
const PREPARE_AT_ONCE = 4
/** How long a child may take to stop cleanly before it is killed. */
const STOP_GRACE_MS = 15_000

export interface ProcessFleetComponents extends AgentEvents {
  logger: Logger
  signal?: AbortSignal
  /** Levels of the children's log lines passed on to `logger` (default warn and error). */
  forward?: LogLevel[]
}

/** The kernel's high-water mark of a process's resident set, in bytes (Linux /proc), or undefined. */
export function vmHwmBytes (pid: number): number | undefined {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m === null ? undefined : Number(m[1]) * 1024
  } catch {
    return undefined
  }
}

/** A message to a child before its call id is added. */
type ToChildBody = ToChild extends infer M ? M extends { id: number } ? Omit<M, 'id'> : never : never

interface Life {
  child: ChildProcess
  pid: number
  calls: Map<number, { resolve: (v: unknown) => void, reject: (e: Error) => void }>
  exited: Promise<void>
}

export async function createProcessFleet (init: AgentFleetInit, components: ProcessFleetComponents): Promise<AgentFleet> {
  const { topology } = init
  const log = components.logger
  const forward = components.forward ?? ['warn', 'error']
  const psk = generatePsk()
  const identities = await Promise.all(topology.sites.map(async s => await simIdentity(topology.seed, s.name)))
  let nextId = 1
  const lives = new Set<Life>()

  const killAll = (): void => { for (const l of lives) l.child.kill('SIGKILL') }
  process.on('exit', killAll)
  const onAbort = (): void => { killAll() }
  components.signal?.addEventListener('abort', onAbort, { once: true })

  const agents = topology.sites.map((s, index) => {
    let state: SiteState = 'absent'
    let generation = 0
    let life: Life | undefined
    let prepared: Promise<Life> | undefined
    let peak: number | null = null
    const pids: number[] = []
    const exits: Array<{ pid: number, signal: string | null, code: number | null }> = []
    /** Bytes counted by lives that ended, not yet taken. */
    let leftover = new Map<string, number>()
    const slog = log.child(s.name)
    let multiaddrs: string[] = []

    const request = (l: Life, m: ToChildBody, signal?: AbortSignal): Promise<unknown> => {
      const id = nextId++
      return new Promise((resolve, reject) => {
        const onAbortCall = (): void => { if (l.child.connected) l.child.send({ kind: 'abort', id } satisfies ToChild) }
        signal?.addEventListener('abort', onAbortCall, { once: true })
        l.calls.set(id, {
          resolve: (v) => { signal?.removeEventListener('abort', onAbortCall); resolve(v) },
          reject: (e) => { signal?.removeEventListener('abort', onAbortCall); reject(e) }
        })
        l.child.send({ ...m, id } as ToChild, (err) => { if (err !== null) { l.calls.delete(id); reject(new TopologyError(`site '${s.name}': cannot reach its process (${err.message})`)) } })
      })
    }

    const onMessage = (l: Life, raw: unknown): void => {
      const parsed = FromChild.safeParse(raw)
      if (!parsed.success) { slog.error('sim.child.bad-message', { error: parsed.error.message }); return }
      const m = parsed.data
      switch (m.kind) {
        case 'reply': {
          const call = l.calls.get(m.id)
          l.calls.delete(m.id)
          if (m.ok) call?.resolve(m.value)
          else call?.reject(Object.assign(new TopologyError(`site '${s.name}': ${m.error?.message ?? 'failed'}`), { name: m.error?.name ?? 'TopologyError' }))
          return
        }
        case 'commit': components.onCommit?.(s.name, { round: m.round, participants: m.participants }); return
        case 'refused': components.onRefused?.(s.name, { round: m.round, message: m.message }); return
        case 'trained': components.onTrained?.(s.name, { round: m.round, params: m.params as Map<string, { shape: number[], data: Float32Array }> }); return
        case 'log': {
          // The child names its lines forgemesh:sim:<site>[:part]; keep the part under this logger.
          const prefix = `forgemesh:sim:${s.name}`
          const part = m.namespace.startsWith(prefix) ? m.namespace.slice(prefix.length) : ''
          log.child(`${s.name}${part}`)[m.level](m.event, m.fields)
          return
        }
      }
    }

    /** A new child: forked, then built from the init message (its data share, backend, learner). */
    const spawn = async (): Promise<Life> => {
      const child = fork(CHILD, [], { execArgv: ['--import', 'tsx'], serialization: 'advanced', stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
      const l: Life = { child, pid: child.pid ?? -1, calls: new Map(), exited: Promise.resolve() }
      lives.add(l)
      pids.push(l.pid)
      l.exited = new Promise(resolve => {
        child.on('exit', (code, signal) => {
          lives.delete(l)
          exits.push({ pid: l.pid, signal, code })
          for (const c of l.calls.values()) c.reject(new TopologyError(`site '${s.name}': its process ${l.pid} ended (${signal ?? `code ${code}`})`))
          l.calls.clear()
          if (life === l) { life = undefined; if (state === 'up') { state = 'down'; slog.warn('sim.child.died', { pid: l.pid, signal, code }) } }
          resolve()
        })
      })
      child.on('message', (raw) => { onMessage(l, raw) })
      child.on('error', (err) => { slog.warn('sim.child.error', { error: err.message }) })
      // Stray output (a library's banner, a crash trace) is passed on, never mixed into the parent's stdout.
      child.stdout?.on('data', (b: Buffer) => { for (const line of b.toString().split('\n')) if (line.trim() !== '') slog.info('sim.child.stdout', { line }) })
      child.stderr?.on('data', (b: Buffer) => { for (const line of b.toString().split('\n')) if (line.trim() !== '') slog.warn('sim.child.stderr', { line }) })
      const childInit: ChildInit = { topology, index, dir: init.dir, psk, settings: init.settings, spec: init.spec, specHash: init.specHash, slots: [...init.slots], routing: init.routing, forward }
      await request(l, { kind: 'init', init: childInit })
      return l
    }

    const measure = (l: Life, reported?: number): void => {
      const hwm = Math.max(vmHwmBytes(l.pid) ?? 0, reported ?? 0)
      if (hwm > 0) peak = Math.max(peak ?? 0, hwm)
    }

    /** Before a life ends: its unsent byte counts and its peak RSS. */
    const collect = async (l: Life): Promise<void> => {
      const bytes = await Promise.race([request(l, { kind: 'call', op: 'takeLinkBytes', args: {} }), new Promise(resolve => setTimeout(resolve, 5_000, undefined))]).catch(() => undefined) as Map<string, number> | undefined
      for (const [to, n] of bytes ?? []) leftover.set(to, (leftover.get(to) ?? 0) + n)
      measure(l)
    }

    const agent = {
      name: s.name,
      index,
      peerId: identities[index]!.peerId,
      get state () { return state },
      get generation () { return generation },
      peakRssBytes: () => peak,
      pids: () => [...pids],
      exits: () => [...exits],
      /** Forks and builds the child ahead of its boot (several at once while the fleet starts). */
      prepare: (): Promise<Life> => { prepared ??= spawn(); return prepared },
      boot: async (bootstrap: string[]): Promise<void> => {
        const l = await agent.prepare()
        prepared = undefined
        life = l
        multiaddrs = await request(l, { kind: 'boot', bootstrap }) as string[]
        state = 'up'
        generation++
      },
      crash: async (): Promise<void> => {
        const l = life
        if (l === undefined || state !== 'up') return
        state = 'down'
        await collect(l)
        life = undefined
        l.child.kill('SIGKILL')
        await l.exited
      },
      halt: async (next: SiteState): Promise<void> => {
        const l = life
        state = next
        if (l === undefined) return
        await collect(l)
        const reported = await Promise.race([request(l, { kind: 'stop' }), new Promise(resolve => setTimeout(resolve, STOP_GRACE_MS, undefined))]).catch(() => undefined)
        measure(l, typeof reported === 'number' ? reported : undefined)
        life = undefined
        if (l.child.connected) l.child.disconnect()
        const killer = setTimeout(() => { l.child.kill('SIGKILL') }, STOP_GRACE_MS)
        await l.exited
        clearTimeout(killer)
      },
      ops: undefined as unknown as SiteOps
    }
    const callOp = async (op: OpName, args: unknown, signal?: AbortSignal): Promise<unknown> => {
      if (op === 'takeLinkBytes') {
        const out = leftover
        leftover = new Map()
        if (life !== undefined && state === 'up') for (const [to, n] of await request(life, { kind: 'call', op, args: {} }) as Map<string, number>) out.set(to, (out.get(to) ?? 0) + n)
        return out
      }
      if (life === undefined || state !== 'up') {
        if (op === 'dropHeld' || op === 'partition') return undefined
        throw new RangeError(`site '${s.name}' is not up`)
      }
      return await request(life, { kind: 'call', op, args: args ?? {} }, signal)
    }
    agent.ops = Object.fromEntries(OP_NAMES.map(op => [op, async (args?: unknown, signal?: AbortSignal) => await callOp(op, args, signal)])) as unknown as SiteOps
    return Object.assign(agent, { multiaddrs: () => multiaddrs })
  })

  const byName = (name: string): typeof agents[number] => {
    const a = agents.find(x => x.name === name)
    if (a === undefined) throw new RangeError(`no site named '${name}'`)
    return a
  }
  const bootstrap = (self: typeof agents[number]): string[] => agents.filter(o => o !== self && o.state === 'up').flatMap(o => o.multiaddrs().slice(0, 1))

  const fleet: AgentFleet = {
    execution: 'process',
    agents: agents as SiteAgent[],
    byName,
    up: () => agents.filter(a => a.state === 'up'),
    start: async (present) => {
      const starting = agents.filter(a => present(a.name))
      // Children build their data share and backend a few at once; nodes then start one after the other,
      // each bootstrapping from those before it (as inline).
      const queue = [...starting]
      const preparing = Array.from({ length: Math.min(PREPARE_AT_ONCE, queue.length) }, async () => {
        for (let a = queue.shift(); a !== undefined; a = queue.shift()) await a.prepare()
      })
      const ready = Promise.all(preparing)
      ready.catch(() => {})
      for (const a of starting) await a.boot(bootstrap(a))
      await ready
    },
    crash: async (name) => { await byName(name).crash() },
    restart: async (name) => { const a = byName(name); if (a.state === 'down') await a.boot(bootstrap(a)) },
    join: async (name) => { const a = byName(name); if (a.state === 'absent') await a.boot(bootstrap(a)) },
    leave: async (name) => { await byName(name).halt('left') },
    partition: async (groups) => { await Promise.all(agents.filter(a => a.state === 'up').map(async a => { await a.ops.partition({ groups }) })) },
    stop: async () => {
      try {
        await Promise.all(agents.filter(a => a.state === 'up').map(async a => { await a.halt('down') }))
      } finally {
        killAll()
        process.off('exit', killAll)
        components.signal?.removeEventListener('abort', onAbort)
      }
    }
  }
  return fleet
}
