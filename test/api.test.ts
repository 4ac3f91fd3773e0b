import { afterEach, describe, expect, it } from 'vitest'
import { createSilentLogger } from '../coordinator/components.ts'
import { createSiteApi, type SiteApi } from '../node/api.ts'
import { HttpError } from '../node/errors.ts'
import { createSiteMetrics } from '../node/metrics.ts'

/** Minimal Prometheus text-format parser: every sample line is `name{labels} value`. */
function parsePrometheus (text: string): Map<string, number> {
  const samples = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$/.exec(line)
    if (m === null) throw new Error(`not Prometheus text: ${line}`)
    samples.set(m[1]!, Number(m[2]))
  }
  return samples
}

describe('site HTTP API (real server on loopback)', () => {
  let api: SiteApi | undefined
  afterEach(async () => { await api?.stop() })

  it('serves status, Prometheus metrics and validated predictions', async () => {
    const metrics = createSiteMetrics('site-a')
    metrics.roundsCommitted.inc(3)
    metrics.bytesSent.inc({ peer: 'p1' }, 1234)
    metrics.epsilonSpent.set(0.75)
    api = createSiteApi({}, {
      status: () => ({ site: 'site-a', round: 3 }),
      metrics: metrics.render,
      predict: async (body) => {
        if (typeof body !== 'object' || body === null || !('inputs' in body)) throw new HttpError(400, 'inputs: required')
        return { ok: true }
      }
    }, { logger: createSilentLogger() })
    await api.start()
    expect(api.url()).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)

    const status = await fetch(`${api.url()}/status`)
    expect(status.status).toBe(200)
    expect(await status.json()).toEqual({ site: 'site-a', round: 3 })

    const res = await fetch(`${api.url()}/metrics`)
    expect(res.headers.get('content-type')).toContain('text/plain')
    const samples = parsePrometheus(await res.text())
    expect(samples.get('forgemesh_rounds_committed_total{site="site-a"}')).toBe(3)
    expect(samples.get('forgemesh_bytes_sent_total{peer="p1",site="site-a"}')).toBe(1234)
    expect(samples.get('forgemesh_privacy_epsilon_spent{site="site-a"}')).toBe(0.75)

    const bad = await fetch(`${api.url()}/v1/predict`, { method: 'POST', body: '{"x":1}' })
    expect(bad.status).toBe(400)
    expect(await bad.json()).toEqual({ error: 'inputs: required' })
    const notJson = await fetch(`${api.url()}/v1/predict`, { method: 'POST', body: '{' })
    expect(notJson.status).toBe(400)
    const missing = await fetch(`${api.url()}/nope`)
    expect(missing.status).toBe(404)
  })

  it('refuses to bind beyond loopback without a token, and checks the token when set', async () => {
    const providers = { status: () => ({}), metrics: async () => ({ contentType: 'text/plain', body: '' }) }
    expect(() => createSiteApi({ host: '0.0.0.0' }, providers, { logger: createSilentLogger() }))
      .toThrowError(expect.objectContaining({ name: 'ApiConfigError', message: expect.stringContaining('api.tokenFile') }))
    api = createSiteApi({ token: 'x'.repeat(32) }, providers, { logger: createSilentLogger() })
    await api.start()
    expect((await fetch(`${api.url()}/status`)).status).toBe(401)
    expect((await fetch(`${api.url()}/status`, { headers: { authorization: `Bearer ${'x'.repeat(32)}` } })).status).toBe(200)
  })
})
