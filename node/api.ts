/**
 * The site's local HTTP API: GET /status, GET /metrics (Prometheus text) and
 * POST /v1/predict. Bound to 127.0.0.1 by default; bound anywhere else it
 * refuses to start without a bearer token, and then every request needs it.
 * The API only reads what its providers give it: it has no way to reach the
 * site's raw data.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { timingSafeEqual } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import type { Logger } from '../coordinator/components.ts'
import { ApiConfigError, HttpError } from './errors.ts'

export interface ApiInit {
  host?: string
  port?: number
  /** Required when host is not a loopback address. */
  token?: string
  /** Largest request body accepted, in bytes. */
  maxBodyBytes?: number
}

export interface ApiProviders {
  status: () => Promise<unknown> | unknown
  metrics: () => Promise<{ contentType: string, body: string }>
  /** Validates and answers a predict request; throws HttpError(400) on bad input. */
  predict?: (body: unknown) => Promise<unknown>
}

export interface SiteApi {
  start: () => Promise<void>
  stop: () => Promise<void>
  /** The bound URL, e.g. http://127.0.0.1:40123 (after start). */
  url: () => string
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost'])

export function createSiteApi (init: ApiInit, providers: ApiProviders, components: { logger: Logger }): SiteApi {
  const host = init.host ?? '127.0.0.1'
  const maxBody = init.maxBodyBytes ?? 1 << 20
  if (!LOOPBACK.has(host) && (init.token === undefined || init.token.length < 16)) {
    throw new ApiConfigError(`api.host is ${host}, which is not loopback: set api.tokenFile to a bearer token of at least 16 characters`)
  }
  let server: Server | undefined
  const log = components.logger

  const authorised = (req: IncomingMessage): boolean => {
    if (init.token === undefined) return true
    const given = Buffer.from(req.headers.authorization ?? '')
    const want = Buffer.from(`Bearer ${init.token}`)
    return given.length === want.length && timingSafeEqual(given, want)
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0]
    if (!authorised(req)) throw new HttpError(401, 'missing or wrong bearer token')
    if (req.method === 'GET' && path === '/status') return sendJson(res, 200, await providers.status())
    if (req.method === 'GET' && path === '/metrics') {
      const m = await providers.metrics()
      res.writeHead(200, { 'content-type': m.contentType })
      res.end(m.body)
      return
    }
    if (req.method === 'POST' && path === '/v1/predict') {
      if (providers.predict === undefined) throw new HttpError(503, 'this site has no assembled model to serve yet')
      const body = await readJsonBody(req, maxBody)
      return sendJson(res, 200, await providers.predict(body))
    }
    throw new HttpError(404, `no route ${req.method ?? ''} ${path ?? ''}`)
  }

  return {
    start: async () => {
      if (server !== undefined) return
      server = createServer((req, res) => {
        handle(req, res).catch((err: unknown) => {
          const status = err instanceof HttpError ? err.status : 500
          if (status === 500) log.error('api:error', { error: err instanceof Error ? err.message : String(err) })
          sendJson(res, status, { error: err instanceof Error ? err.message : 'internal error' })
        })
      })
      const s = server
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject)
        s.listen(init.port ?? 0, host, () => { s.off('error', reject); resolve() })
      })
      log.info('api:listening', { url: urlOf(s, host) })
    },
    stop: async () => {
      const s = server
      if (s === undefined) return
      server = undefined
      s.closeAllConnections()
      await new Promise<void>(resolve => { s.close(() => { resolve() }) })
    },
    url: () => {
      if (server === undefined) throw new ApiConfigError('api not started')
      return urlOf(server, host)
    }
  }
}

function urlOf (server: Server, host: string): string {
  const addr = server.address() as AddressInfo
  return `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}`
}

function sendJson (res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

async function readJsonBody (req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? NaN)
  if (declared > maxBytes) throw new HttpError(413, `body of ${declared} bytes is over the ${maxBytes}-byte limit`)
  const chunks: Buffer[] = []
  let total = 0
  for await (const chunk of req) {
    total += (chunk as Buffer).length
    if (total > maxBytes) throw new HttpError(413, `body is over the ${maxBytes}-byte limit`)
    chunks.push(chunk as Buffer)
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new HttpError(400, 'body is not valid JSON')
  }
}
