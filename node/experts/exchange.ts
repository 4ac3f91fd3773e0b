/**
 * Expert exchange over the mesh. Publishing stores the artifact and
 * announces its hash to the connected members; a member that hears an
 * announce fetches the bytes from the announcer over the artifact protocol
 * (chunked and resumable, node/mesh/transfer.ts), at most `maxConcurrentFetches`
 * at a time, once per hash however many peers announce it, and verifies them
 * before they reach the registry. Withdrawal sends a signed revocation that
 * every member checks and applies. A member that connects later asks for the
 * inventory and catches up the same way.
 */
import { setMaxListeners } from 'node:events'
import type { Clock, Logger } from '../../coordinator/components.ts'
import { Ack, AnnounceRequest, AnnounceResponse, decodeInventory, type Inventory as InventoryT } from '../../protocols/experts-announce/experts-announce.ts'
import { EXPERTS_ANNOUNCE_MAX_FRAME_BYTES, EXPERTS_ANNOUNCE_PROTOCOL, EXPERTS_ANNOUNCE_TIMEOUT_MS, INVENTORY_MAX_BYTES, MAX_ARTIFACT_BYTES } from '../../protocols/experts-announce/constants.ts'
import type { SignedRevocation } from '../../protocols/experts-announce/records.ts'
import type { AuditLog } from '../audit.ts'
import { ArtifactFormatError } from '../errors.ts'
import type { SiteHost } from '../mesh/host.ts'
import { fetchBlob as realFetchBlob, serveBlobs, type FetchBlobOptions, type FetchBlobResult } from '../mesh/transfer.ts'
import type { SiteIdentity } from '../identity.ts'
import { specHash as hashSpec, type MoeSpec } from '../model/spec.ts'
import { buildArtifact, verifyArtifact, type BuildArtifactInput, type MemberKeys, type VerifiedArtifact } from './artifact.ts'
import type { ArtifactRecord, ExpertRegistry } from './registry.ts'
import { signRevocation, verifyRevocation } from './revocation.ts'

const MAX_REMEMBERED_REJECTIONS = 10_000

export interface ExpertExchangeInit {
  spec: MoeSpec
  /** Member peer id -> Ed25519 public key; a function when membership changes. */
  members: MemberKeys | (() => MemberKeys)
  /** Downloads running at once. Default 2. */
  maxConcurrentFetches?: number
  maxArtifactBytes?: number
  chunkBytes?: number
  /** Ask every member that connects for its inventory. Default true. */
  syncOnConnect?: boolean
  /** Serve the registry's artifacts on the artifact protocol. Default true; false when the site serves blobs itself. */
  serveArtifacts?: boolean
}

export interface ExpertExchangeComponents {
  host: SiteHost
  identity: SiteIdentity
  registry: ExpertRegistry
  clock: Clock
  logger: Logger
  audit?: AuditLog
  /** The transfer; a seam for tests that need to hold a download open. Default node/mesh/transfer.ts. */
  fetchBlob?: (host: SiteHost, peerId: string, hash: string, options: FetchBlobOptions) => Promise<FetchBlobResult>
}

export interface ExchangeEvents {
  stored: { hash: string, record: ArtifactRecord, from: string }
  rejected: { hash: string, from: string, error: Error }
  withdrawn: { siteId: string, expertId: string, upToVersion: number, from: string }
}

export interface ExchangeStats {
  active: number
  queued: number
  /** Most downloads ever running at once. */
  peakActive: number
  /** Downloads started (one per hash fetched). */
  transfers: number
  /** Requests for a hash already held or already being fetched. */
  deduplicated: number
}

export type PublishInput = Omit<BuildArtifactInput, 'identity' | 'spec'>

export interface ExpertExchange {
  start: () => Promise<void>
  stop: () => Promise<void>
  /** Builds, signs, stores and announces an expert; returns the stored artifact. */
  publish: (input: PublishInput, options?: { signal?: AbortSignal }) => Promise<VerifiedArtifact>
  /** Announces an artifact the registry holds to the connected members (or `peers`). */
  announce: (hash: string, options?: { peers?: string[], signal?: AbortSignal }) => Promise<void>
  /** Fetches, verifies and stores one artifact from a peer; deduplicated by hash. */
  fetch: (peerId: string, hash: string, options?: { size?: number, signal?: AbortSignal }) => Promise<ArtifactRecord>
  /** Signs a revocation of this site's expert, applies it here and sends it to the members. */
  withdraw: (expertId: string, options?: { upToVersion?: number, reason?: string, signal?: AbortSignal }) => Promise<SignedRevocation>
  /** Asks a peer for its inventory and fetches what is missing here. */
  sync: (peerId: string, options?: { signal?: AbortSignal }) => Promise<void>
  /** Resolves when no download is running or queued. */
  idle: () => Promise<void>
  stats: () => ExchangeStats
  on: <K extends keyof ExchangeEvents>(event: K, listener: (e: ExchangeEvents[K]) => void) => () => void
}

export function createExpertExchange (init: ExpertExchangeInit, components: ExpertExchangeComponents): ExpertExchange {
  const { host, identity, registry, clock, logger: log, audit } = components
  const transfer = components.fetchBlob ?? realFetchBlob
  const specHash = hashSpec(init.spec)
  const limit = init.maxConcurrentFetches ?? 2
  const maxBytes = init.maxArtifactBytes ?? MAX_ARTIFACT_BYTES
  const members = (): MemberKeys => typeof init.members === 'function' ? init.members() : init.members
  const listeners = new Map<keyof ExchangeEvents, Set<(e: never) => void>>()
  const inflight = new Map<string, Promise<ArtifactRecord>>()
  /** Hashes that failed verification, with why: not fetched again. */
  const rejected = new Map<string, string>()
  const waiting: Array<() => void> = []
  const idleWaiters: Array<() => void> = []
  const stats: ExchangeStats = { active: 0, queued: 0, peakActive: 0, transfers: 0, deduplicated: 0 }
  const unsubscribe: Array<() => void> = []
  let stopController = new AbortController()
  let running = false

  const emit = <K extends keyof ExchangeEvents>(event: K, e: ExchangeEvents[K]): void => {
    for (const l of listeners.get(event) ?? []) {
      try { (l as (e: ExchangeEvents[K]) => void)(e) } catch (err) { log.error('experts.listener.failed', { event, error: err }) }
    }
  }
  const record = (kind: Parameters<AuditLog['append']>[0], data: Record<string, unknown>): void => {
    audit?.append(kind, data).catch((err: Error) => { log.error('experts.audit.failed', { kind, error: err.message }) })
  }

  /** A slot among the bounded downloads; released in `finally`. */
  const acquire = async (signal?: AbortSignal): Promise<void> => {
    if (stats.active < limit) { stats.active++; stats.peakActive = Math.max(stats.peakActive, stats.active); return }
    stats.queued++
    try {
      await new Promise<void>((resolve, reject) => {
        const go = (): void => { signal?.removeEventListener('abort', onAbort); resolve() }
        const onAbort = (): void => { const i = waiting.indexOf(go); if (i >= 0) waiting.splice(i, 1); reject(signal!.reason) }
        signal?.addEventListener('abort', onAbort, { once: true })
        waiting.push(go)
      })
    } finally {
      stats.queued--
    }
    stats.active++
    stats.peakActive = Math.max(stats.peakActive, stats.active)
  }
  const release = (): void => {
    stats.active--
    const next = waiting.shift()
    if (next !== undefined) next()
    else if (stats.active === 0) for (const w of idleWaiters.splice(0)) w()
  }

  const download = async (peerId: string, hash: string, signal?: AbortSignal): Promise<ArtifactRecord> => {
    await acquire(signal)
    try {
      stats.transfers++
      const result = await transfer(host, peerId, hash, { signal, ...(init.chunkBytes !== undefined ? { chunkBytes: init.chunkBytes } : {}), logger: log })
      const bytes = result.bytes
      if (bytes === undefined) throw new ArtifactFormatError(`fetch of ${hash} returned no bytes`)
      let artifact: VerifiedArtifact
      try {
        artifact = await verifyArtifact(bytes, { members: members(), specHash, spec: init.spec, expectedHash: hash, maxBytes })
      } catch (err) {
        rejected.set(hash, `${(err as Error).name}: ${(err as Error).message}`)
        // Bounded, so a member announcing endless junk cannot grow it without limit.
        if (rejected.size > MAX_REMEMBERED_REJECTIONS) rejected.delete(rejected.keys().next().value!)
        log.warn('experts.rejected', { peer: peerId, hash, error: (err as Error).name, message: (err as Error).message })
        record('artifact:rejected', { hash, from: peerId, error: (err as Error).name, message: (err as Error).message })
        emit('rejected', { hash, from: peerId, error: err as Error })
        throw err
      }
      await registry.put(artifact, { from: peerId })
      const rec = (await registry.record(hash))!
      const m = artifact.manifest
      log.info('experts.fetched', { peer: peerId, hash, site: m.siteId, expert: m.expertId, version: m.version, bytes: bytes.byteLength, attempts: result.attempts })
      record('artifact:fetched', { hash, from: peerId, site: m.siteId, expert: m.expertId, slot: m.slot, version: m.version, bytes: bytes.byteLength })
      emit('stored', { hash, record: rec, from: peerId })
      return rec
    } finally {
      release()
    }
  }

  const fetch: ExpertExchange['fetch'] = async (peerId, hash, options = {}) => {
    const known = await registry.record(hash)
    if (known !== undefined) { stats.deduplicated++; return known }
    const reason = rejected.get(hash)
    if (reason !== undefined) throw new ArtifactFormatError(`artifact ${hash} was rejected before (${reason}); not fetched again`)
    if (options.size !== undefined && options.size > maxBytes) throw new ArtifactFormatError(`artifact ${hash} of ${options.size} bytes exceeds the ${maxBytes}-byte limit`)
    const running = inflight.get(hash)
    if (running !== undefined) { stats.deduplicated++; return await running }
    const signal = options.signal === undefined ? stopController.signal : AbortSignal.any([options.signal, stopController.signal])
    const p = download(peerId, hash, signal).finally(() => { inflight.delete(hash) })
    inflight.set(hash, p)
    return await p
  }

  /** Fetch in the background (announce, sync): outcomes are logged, audited and emitted. */
  const fetchLater = (peerId: string, hash: string, size: number): void => {
    fetch(peerId, hash, { size }).catch((err: Error) => {
      if (!rejected.has(hash)) log.info('experts.fetch.failed', { peer: peerId, hash, error: err.name, message: err.message })
    })
  }

  const applyRevocation = async (input: unknown, from: string): Promise<boolean> => {
    const signed = await verifyRevocation(input, members())
    const changed = await registry.withdraw(signed)
    if (changed) {
      const { siteId, expertId, upToVersion } = signed.revocation
      log.info('experts.withdrawn', { site: siteId, expert: expertId, upToVersion, from })
      record('artifact:withdrawn', { site: siteId, expert: expertId, upToVersion, from, reason: signed.revocation.reason })
      emit('withdrawn', { siteId, expertId, upToVersion, from })
    }
    return changed
  }

  const connectedMembers = (): string[] => {
    const m = members()
    return host.connectedPeers().filter(p => m.has(p) && p !== identity.peerId)
  }

  const send = async (peers: string[], header: AnnounceRequest, signal?: AbortSignal): Promise<void> => {
    await Promise.all(peers.map(async (peerId) => {
      try {
        const answer = await host.request(peerId, EXPERTS_ANNOUNCE_PROTOCOL, { header }, { schema: Ack, timeoutMs: EXPERTS_ANNOUNCE_TIMEOUT_MS, signal })
        log.debug('experts.announced', { peer: peerId, kind: header.kind, status: answer.header.status })
      } catch (err) {
        // A member that misses an announce catches up through sync when it reconnects.
        log.info('experts.announce.failed', { peer: peerId, kind: header.kind, error: (err as Error).message })
      }
    }))
  }

  const inventory = async (): Promise<InventoryT> => ({
    artifacts: (await registry.list()).filter(r => !rejected.has(r.hash)).map(r => ({ hash: r.hash, size: r.size })),
    revocations: await registry.revocations()
  })

  const sync: ExpertExchange['sync'] = async (peerId, options = {}) => {
    const fs = await host.openStream(peerId, EXPERTS_ANNOUNCE_PROTOCOL, { maxFrameBytes: EXPERTS_ANNOUNCE_MAX_FRAME_BYTES, signal: options.signal })
    let inv: InventoryT
    try {
      await fs.write({ kind: 'list' }, undefined, options)
      await fs.closeWrite(options)
      const frame = await fs.read(AnnounceResponse, { signal: options.signal ?? AbortSignal.timeout(EXPERTS_ANNOUNCE_TIMEOUT_MS) })
      if (frame?.header.kind !== 'inventory') throw new ArtifactFormatError(`${peerId} answered list without an inventory`)
      try {
        inv = decodeInventory(frame.header, frame.body)
      } catch (err) {
        throw new ArtifactFormatError(`${peerId} sent a malformed inventory: ${(err as Error).message}`, { cause: err })
      }
    } catch (err) {
      fs.abort(err as Error)
      throw err
    }
    for (const r of inv.revocations) await applyRevocation(r, peerId).catch((err: Error) => { log.warn('experts.revocation.rejected', { peer: peerId, error: err.name, message: err.message }) })
    for (const a of inv.artifacts) if (!rejected.has(a.hash) && !await registry.has(a.hash)) fetchLater(peerId, a.hash, a.size)
  }

  return {
    start: async () => {
      if (running) return
      running = true
      stopController = new AbortController()
      // Every download (and the dial under it) listens on this signal: dozens at once in a large federation are no leak.
      setMaxListeners(0, stopController.signal)
      if (init.serveArtifacts !== false) await serveBlobs(host, registry.blobSource(), { logger: log })
      await host.handleStream(EXPERTS_ANNOUNCE_PROTOCOL, async (fs, ctx) => {
        const frame = await fs.read(AnnounceRequest, { signal: ctx.signal })
        if (frame === undefined) return
        const req = frame.header
        let answer: Ack | undefined
        if (req.kind === 'list') {
          const body = new TextEncoder().encode(JSON.stringify(await inventory()))
          if (body.byteLength > INVENTORY_MAX_BYTES) throw new ArtifactFormatError(`inventory of ${body.byteLength} bytes exceeds ${INVENTORY_MAX_BYTES}`)
          await fs.write({ kind: 'inventory', bytes: body.byteLength }, body, { signal: ctx.signal })
        } else if (req.kind === 'revoke') {
          try {
            answer = { kind: 'ack', status: await applyRevocation(req.signed, ctx.peerId) ? 'applied' : 'known' }
          } catch (err) {
            log.warn('experts.revocation.rejected', { peer: ctx.peerId, error: (err as Error).name, message: (err as Error).message })
            answer = { kind: 'ack', status: 'rejected', reason: `${(err as Error).name}: ${(err as Error).message}`.slice(0, 1024) }
          }
        } else if (await registry.has(req.hash) || inflight.has(req.hash)) {
          if (inflight.has(req.hash)) stats.deduplicated++
          answer = { kind: 'ack', status: 'known' }
        } else if (rejected.has(req.hash) || req.size > maxBytes) {
          answer = { kind: 'ack', status: 'rejected', reason: (rejected.get(req.hash) ?? `${req.size} bytes exceeds the ${maxBytes}-byte limit`).slice(0, 1024) }
        } else {
          fetchLater(ctx.peerId, req.hash, req.size)
          answer = { kind: 'ack', status: 'queued' }
        }
        if (answer !== undefined) await fs.write(answer, undefined, { signal: ctx.signal })
        await fs.closeWrite({ signal: ctx.signal })
      }, { maxFrameBytes: EXPERTS_ANNOUNCE_MAX_FRAME_BYTES, timeoutMs: EXPERTS_ANNOUNCE_TIMEOUT_MS })
      if (init.syncOnConnect !== false) {
        const trySync = (peerId: string): void => {
          if (!members().has(peerId)) return
          sync(peerId, { signal: stopController.signal }).catch((err: Error) => { log.debug('experts.sync.failed', { peer: peerId, error: err.message }) })
        }
        unsubscribe.push(host.on('peer:connect', ({ peerId }) => { trySync(peerId) }))
        for (const peerId of connectedMembers()) trySync(peerId)
      }
    },
    stop: async () => {
      if (!running) return
      running = false
      for (const u of unsubscribe.splice(0)) u()
      stopController.abort(new Error('expert exchange stopped'))
      await Promise.allSettled([...inflight.values()])
    },
    publish: async (input, options = {}) => {
      const artifact = await buildArtifact({ ...input, identity, spec: init.spec }, { clock })
      await registry.put(artifact, { from: identity.peerId })
      const m = artifact.manifest
      log.info('experts.published', { hash: artifact.hash, expert: m.expertId, slot: m.slot, version: m.version, bytes: artifact.bytes.byteLength })
      record('artifact:published', { hash: artifact.hash, expert: m.expertId, slot: m.slot, version: m.version, bytes: artifact.bytes.byteLength })
      await send(connectedMembers(), { kind: 'announce', hash: artifact.hash, size: artifact.bytes.byteLength }, options.signal)
      return artifact
    },
    announce: async (hash, options = {}) => {
      const rec = await registry.record(hash)
      if (rec === undefined) throw new ArtifactFormatError(`cannot announce ${hash}: the registry does not hold it`)
      await send(options.peers ?? connectedMembers(), { kind: 'announce', hash, size: rec.size }, options.signal)
    },
    fetch,
    withdraw: async (expertId, options = {}) => {
      let upTo = options.upToVersion
      if (upTo === undefined) {
        const versions = (await registry.history(identity.peerId, expertId)).map(r => r.manifest.version)
        if (versions.length === 0) throw new ArtifactFormatError(`this site has published no expert '${expertId}' to withdraw`)
        upTo = Math.max(...versions)
      }
      const signed = await signRevocation({ identity, expertId, upToVersion: upTo, reason: options.reason }, { clock })
      await applyRevocation(signed, identity.peerId)
      await send(connectedMembers(), { kind: 'revoke', signed }, options.signal)
      return signed
    },
    sync,
    idle: async () => {
      if (stats.active === 0 && stats.queued === 0) return
      await new Promise<void>(resolve => { idleWaiters.push(resolve) })
    },
    stats: () => ({ ...stats }),
    on: (event, listener) => {
      let set = listeners.get(event)
      if (set === undefined) listeners.set(event, set = new Set())
      set.add(listener as (e: never) => void)
      return () => { set.delete(listener as (e: never) => void) }
    }
  }
}
