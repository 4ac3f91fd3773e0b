/**
 * A simulated site in a child process of its own ("execution": "process").
 * The parent forks this file with an IPC channel (advanced serialization) and
 * sends a small init message; the child builds everything of its site itself:
 * its seeded identity, its data share (sim/data.ts, deterministic from the
 * seed), its learner, its shaped network (every link of the topology; the
 * parent sends partitions), its LevelDB store under the run folder, its node
 * and its expert exchange. Then it answers the agent's operations by name.
 *
 * The expert's weights are checkpointed to the run folder after each local
 * training, so a child that was SIGKILLed and started again resumes its
 * expert; rounds it catches up from its store and peers, as any node does.
 * When the parent goes away (the channel disconnects), the child exits.
 */
import '../../node/runtime.ts'
import { setMaxListeners } from 'node:events'
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { deserialize, serialize } from 'node:v8'
import { z } from 'zod'
import { createSeededRandom, type LogLevel, type Logger } from '../../coordinator/components.ts'
import type { TensorMap } from '../../protocols/tensors.ts'
import type { LabeledData } from '../../node/data/types.ts'
import type { MoeLearner } from '../../node/federation/learner.ts'
import { recipeInitialParams } from '../../node/federation/recipe.ts'
import { selectBackend } from '../../node/model/backend.ts'
import { expertGroup } from '../../node/model/params.ts'
import type { Site } from '../../node/site/site.ts'
import { openSiteStore, type SiteStore } from '../../node/store.ts'
import { loadSiteShare } from '../data.ts'
import { createSimSite, simIdentity, simNetwork } from '../fleet.ts'
import { FromChild, ToChild, type ChildInit } from './ipc.ts'
import { attachSiteOps, linkCounter, siteLearner, trainingLearner, type PhaseOps } from './site-ops.ts'
import type { OpName, SiteOps } from './types.ts'

/** A checkpoint larger than this is not ours. */
const MAX_CHECKPOINT_BYTES = 64 << 20

const send = (m: FromChild): void => { process.send?.(m) }

function ipcLogger (namespace: string, forward: ReadonlySet<LogLevel>): Logger {
  const at = (level: LogLevel) => (event: string, fields?: Record<string, unknown>): void => {
    if (forward.has(level)) send({ kind: 'log', level, namespace, event, ...(fields !== undefined ? { fields: JSON.parse(JSON.stringify(fields, (_k, v: unknown) => typeof v === 'bigint' ? String(v) : v)) as Record<string, unknown> } : {}) })
  }
  return { namespace, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: (suffix) => ipcLogger(`${namespace}:${suffix}`, forward) }
}

const Checkpoint = z.object({ round: z.number().int().min(0), params: z.map(z.string(), z.object({ shape: z.array(z.number().int().min(0)), data: z.instanceof(Float32Array) })) })

interface Built {
  init: ChildInit
  name: string
  log: Logger
  learner: MoeLearner
  wrapped: ReturnType<typeof trainingLearner>
  network: ReturnType<typeof simNetwork>
  counter: ReturnType<typeof linkCounter>
  identity: Awaited<ReturnType<typeof simIdentity>>
  members: Map<string, Uint8Array>
  data: LabeledData
}

let built: Built | undefined
let running: { site: Site, store: SiteStore, ops: PhaseOps, detach: () => Promise<void> } | undefined
let slowdown = 1
const aborts = new Map<number, AbortController>()

async function build (init: ChildInit): Promise<Built> {
  const { topology, index } = init
  // The site's own signals carry a listener per operation in flight, several per peer: with N peers that is no leak.
  setMaxListeners(Math.max(10, 4 * topology.sites.length))
  const name = topology.sites[index]!.name
  const log = ipcLogger(`forgemesh:sim:${name}`, new Set(init.forward))
  await selectBackend(topology.sites[index]!.backend, log)
  // Deterministic from the seed: this child reads its own rows only.
  const data = await loadSiteShare(topology, index)
  const identities = await Promise.all(topology.sites.map(async s => ({ name: s.name, id: await simIdentity(topology.seed, s.name) })))
  const identity = identities[index]!.id
  const peers = new Map(identities.map(s => [s.id.peerId, s.name]))
  const network = simNetwork(topology, identities.map(s => ({ name: s.name, peerId: s.id.peerId })), { random: createSeededRandom(topology.seed), logger: log })
  const learner = siteLearner(topology, { name, slot: init.slots[index]!, rows: data }, { spec: init.spec, initial: recipeInitialParams(init.spec) }, log)
  const ckpt = join(init.dir, 'checkpoints', `${name}.v8`)
  const resumed = await readCheckpoint(ckpt)
  if (resumed !== undefined) {
    learner.model.setParams(resumed.params, { only: [expertGroup(init.slots[index]!)] })
    log.info('sim.child.resumed', { round: resumed.round })
  }
  let saving = Promise.resolve()
  const wrapped = trainingLearner(learner, {
    round: () => (running?.site.status().round ?? 0) + 1,
    slowdown: () => slowdown,
    onTrained: (round, params) => {
      send({ kind: 'trained', round, params })
      saving = saving.then(async () => { await writeCheckpoint(ckpt, { round, params }) }).catch((err: Error) => { log.warn('sim.child.checkpoint-failed', { error: err.message }) })
    }
  })
  return { init, name, log, learner, wrapped, network, counter: linkCounter(p => peers.get(p)), identity, members: new Map(identities.map(s => [s.id.peerId, s.id.publicKey])), data }
}

async function readCheckpoint (path: string): Promise<{ round: number, params: TensorMap } | undefined> {
  const size = await stat(path).then(s => s.size, () => undefined)
  if (size === undefined) return undefined
  if (size > MAX_CHECKPOINT_BYTES) throw new RangeError(`checkpoint ${path} is ${size} bytes, more than ${MAX_CHECKPOINT_BYTES}`)
  return Checkpoint.parse(deserialize(await readFile(path)))
}

async function writeCheckpoint (path: string, value: { round: number, params: TensorMap }): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true })
  // Written aside and renamed: a SIGKILL mid-write leaves the previous checkpoint whole.
  await writeFile(`${path}.tmp`, serialize(value))
  await rename(`${path}.tmp`, path)
}

async function boot (b: Built, bootstrap: string[]): Promise<string[]> {
  const { init, name, log } = b
  const store = await openSiteStore(join(init.dir, 'stores', name))
  const site = createSimSite({
    topology: init.topology, index: init.index, identity: b.identity, store, bootstrap, psk: init.psk,
    allowlist: [...b.members.keys()], network: b.network, settings: init.settings, specHash: init.specHash
  }, {
    clock: { now: () => Date.now() },
    random: createSeededRandom(init.topology.seed).fork(`site/${name}`),
    logger: log,
    learner: b.wrapped,
    wireTap: (direction, peerId, protocol, bytes) => { if (direction === 'out') b.counter.add(peerId, protocol, bytes.byteLength) }
  })
  site.on('commit', (e) => { send({ kind: 'commit', round: e.round, participants: e.participants }) })
  site.on('privacy:refused', (e) => { send({ kind: 'refused', round: e.round, message: e.message }) })
  await site.start()
  const attached = await attachSiteOps({
    name, slot: init.slots[init.index]!, seed: init.topology.seed, spec: init.spec, routing: init.routing, members: b.members,
    budget: init.topology.federation.privacy.budget ?? undefined
  }, { site, store, identity: b.identity, learner: b.learner, data: b.data, logger: log.child('experts') })
  running = { site, store, ...attached }
  return site.multiaddrs()
}

async function call (op: OpName, args: unknown, signal: AbortSignal): Promise<unknown> {
  const b = built!
  switch (op) {
    case 'takeLinkBytes': return b.counter.take()
    case 'setSlowdown': slowdown = (args as { factor: number }).factor; return undefined
    case 'partition': b.network.partition((args as { groups: string[][] | null }).groups); return undefined
    default: {
      if (running === undefined) throw new RangeError(`site '${b.name}' is not up`)
      const fn = running.ops[op] as (a: unknown, s?: AbortSignal) => Promise<unknown>
      return await fn(args, signal)
    }
  }
}

async function stop (): Promise<number> {
  const r = running
  running = undefined
  if (r !== undefined) {
    await r.detach()
    await r.site.stop()
    await r.store.close()
  }
  built?.learner.dispose()
  return process.resourceUsage().maxRSS * 1024
}

function reply (id: number, work: () => Promise<unknown>): void {
  work().then(
    (value) => { send({ kind: 'reply', id, ok: true, value }) },
    (err: unknown) => { const e = err instanceof Error ? err : new Error(String(err)); send({ kind: 'reply', id, ok: false, error: { name: e.name, message: e.message } }) }
  ).finally(() => { aborts.delete(id) })
}

process.on('message', (raw: unknown) => {
  const parsed = ToChild.safeParse(raw)
  if (!parsed.success) { built?.log.error('sim.child.bad-message', { error: parsed.error.message }); return }
  const m = parsed.data
  switch (m.kind) {
    case 'init': reply(m.id, async () => { built = await build(m.init); return process.pid }); return
    case 'boot': reply(m.id, async () => await boot(built!, m.bootstrap)); return
    case 'call': {
      const ac = new AbortController()
      aborts.set(m.id, ac)
      reply(m.id, async () => await call(m.op, m.args, ac.signal))
      return
    }
    case 'abort': aborts.get(m.id)?.abort(new DOMException('aborted by the simulator', 'AbortError')); return
    case 'stop': reply(m.id, stop); return
  }
})
// The parent is gone (it exited or dropped us): no site outlives its run.
process.on('disconnect', () => { process.exit(0) })
export type { SiteOps }
