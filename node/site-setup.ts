/**
 * Creating a site folder (`forgemesh init <dir>`): the site's Ed25519 key,
 * the federation key (new, or imported from the member who created the
 * federation), a config template that validates, and the audit log's first
 * record. Nothing is overwritten: a folder that already holds a site is
 * refused before anything is written.
 */
import { chmod, copyFile, mkdir, open, readFile, stat } from 'node:fs/promises'
import { basename, join, resolve } from 'node:path'
import type { Clock } from '../coordinator/components.ts'
import { createAuditLog } from './audit.ts'
import { CONFIG_FILE_NAME, parseSiteConfig, type SiteConfigInput } from './config.ts'
import { ConfigError, StoreInUseError } from './errors.ts'
import { loadOrCreateIdentity } from './identity.ts'
import { generatePsk, loadPsk } from './mesh/psk.ts'
import { SITE_CONFIG_SCHEMA_PATH } from './site-config-schema.ts'
import { openSiteStore, type SiteStore } from './store.ts'

export interface InitSiteOptions {
  dir: string
  /** Default: the folder's name, lower-cased. */
  site?: string
  /** Import this federation key file instead of generating a new one. */
  pskFrom?: string
  listen?: string[]
  apiPort?: number
}

export interface InitSiteResult {
  site: string
  peerId: string
  configFile: string
  identityFile: string
  pskFile: string
  pskImported: boolean
  /** What the other sites put in their mesh.members for this one. */
  member: { name: string, peerId: string, addresses: string[] }
}

const IDENTITY = 'identity.json'
const PSK = 'federation.psk'

async function exists (path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}

/** Writes bytes to a new file with mode 0600; fails if the file exists. */
async function writeNew (path: string, bytes: Uint8Array | string, mode = 0o600): Promise<void> {
  const fh = await open(path, 'wx', mode)
  try {
    await fh.writeFile(bytes)
    await fh.sync()
  } finally {
    await fh.close()
  }
  await chmod(path, mode)
}

export function defaultSiteName (dir: string): string {
  const name = basename(resolve(dir)).toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 63)
  return name === '' ? 'site' : name
}

export async function initSite (options: InitSiteOptions, components: { clock: Clock }): Promise<InitSiteResult> {
  const dir = resolve(options.dir)
  const site = options.site ?? defaultSiteName(dir)
  const configFile = join(dir, CONFIG_FILE_NAME)
  const listen = options.listen ?? ['/ip4/0.0.0.0/tcp/4100']
  const template: SiteConfigInput = {
    $schema: SITE_CONFIG_SCHEMA_PATH,
    site,
    identityFile: IDENTITY,
    storeDir: 'store',
    mesh: { listen, pskFile: PSK, members: [] },
    federation: { rounds: 100, localSteps: 10, strategy: { kind: 'fedavg' }, quorumFraction: 0.5, roundTimeoutMs: 60_000 },
    learner: { kind: 'regression' },
    api: { host: '127.0.0.1', port: options.apiPort ?? 7400 },
    log: { level: 'info' }
  }
  // Validate before touching the disk: a bad --site or --listen is a usage problem.
  parseSiteConfig(template, 'the new config')
  for (const f of [CONFIG_FILE_NAME, IDENTITY, PSK, 'store']) {
    if (await exists(join(dir, f))) throw new ConfigError(`${join(dir, f)} already exists: ${dir} already holds a site; nothing was changed`)
  }
  // Read the imported key before creating anything, so a bad one leaves no half-made site.
  const imported = options.pskFrom === undefined ? undefined : await loadPsk(options.pskFrom)
  await mkdir(dir, { recursive: true, mode: 0o700 })

  const identity = await loadOrCreateIdentity(join(dir, IDENTITY))
  const pskFile = join(dir, PSK)
  if (imported !== undefined) {
    await copyFile(options.pskFrom!, pskFile)
    await chmod(pskFile, 0o600)
    // The copy must be the key that was checked.
    if (!Buffer.from(await readFile(pskFile)).equals(Buffer.from(imported))) throw new ConfigError(`${options.pskFrom!} changed while it was being imported`)
  } else {
    await writeNew(pskFile, generatePsk())
  }
  await writeNew(configFile, JSON.stringify(template, null, 2) + '\n', 0o644)

  const store = await openSiteStore(join(dir, 'store'))
  try {
    await createAuditLog(store, components).append('site:init', { site, peerId: identity.peerId, pskImported: imported !== undefined })
  } finally {
    await store.close()
  }
  const addresses = listen.map(a => `${a}/p2p/${identity.peerId}`)
  return {
    site,
    peerId: identity.peerId,
    configFile,
    identityFile: join(dir, IDENTITY),
    pskFile,
    pskImported: imported !== undefined,
    member: { name: site, peerId: identity.peerId, addresses }
  }
}

/**
 * Opens an existing site store for a tool (`audit verify`): a missing one is
 * a config problem, and one held by a running node is named as such rather
 * than surfacing LevelDB's lock error.
 */
export async function openExistingStore (path: string): Promise<SiteStore> {
  if (!await exists(join(path, 'CURRENT'))) throw new ConfigError(`${path} is not a site store (no LevelDB there); run 'forgemesh init' first`)
  try {
    return await openSiteStore(path)
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause
    if (cause?.code === 'LEVEL_LOCKED') throw new StoreInUseError(`${path} is in use by another process (a running node?): stop it first`, { cause: err })
    throw err
  }
}
