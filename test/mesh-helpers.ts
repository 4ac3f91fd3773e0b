/** Shared set-up for the mesh suites: identities, hosts on loopback, waiting on state. */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSilentLogger, type Logger } from '../coordinator/components.ts'
import { systemClock } from '../node/components.ts'
import { loadOrCreateIdentity, type SiteIdentity } from '../node/identity.ts'
import { createSiteHost, generatePsk, type SiteHost, type SiteHostInit, type WireTap } from '../node/mesh/host.ts'
import { createUpdateService, type UpdateCallback, type UpdateService } from '../node/mesh/update.ts'

export const LOOPBACK = '/ip4/127.0.0.1/tcp/0'

export function tempDir (prefix: string): { path: string, remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix))
  return { path, remove: () => { rmSync(path, { recursive: true, force: true }) } }
}

export async function identities (dir: string, n: number): Promise<SiteIdentity[]> {
  const out: SiteIdentity[] = []
  for (let i = 0; i < n; i++) out.push(await loadOrCreateIdentity(join(dir, `site-${i}.key`)))
  return out
}

export function host (identity: SiteIdentity, init: Partial<SiteHostInit>, extra: { logger?: Logger, wireTap?: WireTap } = {}): SiteHost {
  return createSiteHost({
    identity,
    listen: [LOOPBACK],
    bootstrap: [],
    allowlist: [],
    reconnect: { initialMs: 50, maxMs: 500 },
    ...init
  }, { logger: extra.logger ?? createSilentLogger('forgemesh:mesh'), clock: systemClock, ...(extra.wireTap !== undefined ? { wireTap: extra.wireTap } : {}) })
}

/** Resolves when `check` holds; re-checked every 10 ms until the deadline. */
export async function waitFor (what: string, check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

/** A logger that records every event, for asserting what a site logged. */
export function recordingLogger (namespace = 'forgemesh:mesh'): Logger & { records: Array<{ level: string, event: string, fields?: Record<string, unknown> }> } {
  const records: Array<{ level: string, event: string, fields?: Record<string, unknown> }> = []
  const make = (ns: string): Logger => ({
    namespace: ns,
    debug: (event, fields) => { records.push({ level: 'debug', event, fields }) },
    info: (event, fields) => { records.push({ level: 'info', event, fields }) },
    warn: (event, fields) => { records.push({ level: 'warn', event, fields }) },
    error: (event, fields) => { records.push({ level: 'error', event, fields }) },
    child: (suffix) => make(`${ns}:${suffix}`)
  })
  return Object.assign(make(namespace), { records })
}

export interface UpdatePair {
  /** Receives updates. */
  a: SiteHost
  /** Sends them; connected to `a`. */
  b: SiteHost
  receiver: UpdateService
  sender: UpdateService
  /** Names of the errors `a` cut a peer off for. */
  misbehaved: string[]
  stop: () => Promise<void>
}

/** Two hosts on loopback with the update protocol: `b` sends, `a` receives through `onUpdate`. */
export async function updatePair (dir: string, onUpdate: UpdateCallback): Promise<UpdatePair> {
  const psk = generatePsk()
  const ids = await identities(dir, 2)
  const allowlist = ids.map(i => i.peerId)
  const a = host(ids[0]!, { psk, allowlist })
  const receiver = createUpdateService({}, { host: a, logger: createSilentLogger('t') })
  receiver.onUpdate(onUpdate)
  await receiver.start()
  await a.start()
  const misbehaved: string[] = []
  a.on('peer:misbehaved', (e) => { misbehaved.push(e.error.name) })
  const b = host(ids[1]!, { psk, allowlist, bootstrap: [a.multiaddrs()[0]!] })
  const sender = createUpdateService({}, { host: b, logger: createSilentLogger('t') })
  await b.start()
  await waitFor('b connected to a', () => b.connectedPeers().includes(a.peerId))
  return { a, b, receiver, sender, misbehaved, stop: async () => { await b.stop(); await a.stop() } }
}
