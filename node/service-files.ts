/**
 * What a running node tells the tools beside it: the runtime file (pid, peer
 * id, addresses, API URL; written at start, removed at a clean stop) and the
 * /status document. Both are read back through zod, the status after a size
 * check: they cross a process boundary.
 */
import { open, readFile, rename, rm, stat } from 'node:fs/promises'
import { z } from 'zod'
import { ConfigError, NodeNotRunningError } from './errors.ts'

export const RuntimeFile = z.strictObject({
  v: z.literal(1),
  pid: z.number().int().positive(),
  site: z.string(),
  peerId: z.string(),
  apiUrl: z.string().url(),
  addresses: z.array(z.string()),
  startedAt: z.string()
})
export type RuntimeFile = z.infer<typeof RuntimeFile>

const Spent = z.object({ epsilon: z.number(), delta: z.number() })

export const NodeStatus = z.object({
  site: z.string(),
  peerId: z.string(),
  state: z.enum(['starting', 'running', 'stopping', 'stopped']),
  uptimeS: z.number(),
  round: z.object({
    /** Last round in this site's committed round log. */
    committed: z.number().int().min(0),
    /** federation.rounds: the node keeps serving after it. */
    target: z.number().int().min(0),
    /** Last committed round found in the store at start (0 for a new site). */
    resumedFrom: z.number().int().min(0)
  }),
  coordinator: z.string().nullable(),
  peers: z.array(z.object({ peerId: z.string(), name: z.string().optional(), connected: z.boolean() })),
  experts: z.array(z.string()),
  backend: z.string(),
  privacy: z.object({ spent: Spent, remaining: Spent }).nullable(),
  /** Same as privacy.spent.epsilon (0 with no budget): the figure operators look for. */
  eps: z.number(),
  addresses: z.array(z.string())
})
export type NodeStatus = z.infer<typeof NodeStatus>

const MAX_RUNTIME_FILE_BYTES = 64 * 1024
const MAX_STATUS_BYTES = 1 << 20
const MAX_TOKEN_FILE_BYTES = 4096

/** Written under a temporary name and renamed, so a reader never sees half of it. */
export async function writeRuntimeFile (path: string, body: RuntimeFile): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`
  const fh = await open(tmp, 'w', 0o644)
  try {
    await fh.writeFile(JSON.stringify(body, null, 2) + '\n')
  } finally {
    await fh.close()
  }
  await rename(tmp, path)
}

export async function removeRuntimeFile (path: string): Promise<void> {
  await rm(path, { force: true })
}

export async function readRuntimeFile (path: string): Promise<RuntimeFile> {
  let text: string
  try {
    const info = await stat(path)
    if (info.size > MAX_RUNTIME_FILE_BYTES) throw new NodeNotRunningError(`${path} is ${info.size} bytes: not a runtime file`)
    text = await readFile(path, 'utf8')
  } catch (err) {
    if (err instanceof NodeNotRunningError) throw err
    throw new NodeNotRunningError(`no node is running for this config (${path} is missing): start one with 'forgemesh node start'`)
  }
  try {
    return RuntimeFile.parse(JSON.parse(text))
  } catch {
    throw new NodeNotRunningError(`${path} is not a valid runtime file; is the node half-started?`)
  }
}

export async function readTokenFile (path: string): Promise<string> {
  let text: string
  try {
    const info = await stat(path)
    if (info.size > MAX_TOKEN_FILE_BYTES) throw new ConfigError(`${path}: a token file of ${info.size} bytes is not a token`)
    text = await readFile(path, 'utf8')
  } catch (err) {
    if (err instanceof ConfigError) throw err
    throw new ConfigError(`api.tokenFile ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`)
  }
  const token = text.trim()
  if (token.length < 16 || /\s/.test(token)) throw new ConfigError(`api.tokenFile ${path}: expected one token of at least 16 characters without spaces`)
  return token
}

/** GET <url>/status, validated. */
export async function fetchNodeStatus (url: string, options: { token?: string | undefined, timeoutMs?: number, signal?: AbortSignal } = {}): Promise<NodeStatus> {
  const timeout = AbortSignal.timeout(options.timeoutMs ?? 5000)
  const signal = options.signal === undefined ? timeout : AbortSignal.any([options.signal, timeout])
  let res: Response
  try {
    res = await fetch(`${url}/status`, { signal, headers: options.token === undefined ? {} : { authorization: `Bearer ${options.token}` } })
  } catch (err) {
    throw new NodeNotRunningError(`no node answers at ${url}: ${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}`)
  }
  const body = await res.text()
  if (res.status === 401) throw new NodeNotRunningError(`${url} refused the request: missing or wrong bearer token (api.tokenFile)`)
  if (res.status !== 200) throw new NodeNotRunningError(`${url}/status answered ${res.status}: ${body.slice(0, 200)}`)
  if (body.length > MAX_STATUS_BYTES) throw new NodeNotRunningError(`${url}/status sent ${body.length} bytes: not a status`)
  try {
    return NodeStatus.parse(JSON.parse(body))
  } catch {
    throw new NodeNotRunningError(`${url}/status did not answer with a forgemesh status`)
  }
}
