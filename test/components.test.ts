import { describe, expect, it } from 'vitest'
import { createManualClock, createSeededRandom, createSilentLogger } from '../coordinator/components.ts'
import { createLogger, type LogRecord } from '../node/components.ts'

describe('seeded random', () => {
  it('is fully determined by its seed', () => {
    const a = createSeededRandom(7)
    const b = createSeededRandom(7)
    const xs = Array.from({ length: 5 }, () => a.next())
    expect(Array.from({ length: 5 }, () => b.next())).toEqual(xs)
    expect(createSeededRandom(8).next()).not.toBe(xs[0])
    expect(createSeededRandom('site-a').next()).toBe(createSeededRandom('site-a').next())
  })

  it('forks streams that do not depend on how much the parent was used', () => {
    const a = createSeededRandom(1)
    const b = createSeededRandom(1)
    b.next(); b.next()
    expect(a.fork('dp').next()).toBe(b.fork('dp').next())
    expect(a.fork('dp').next()).not.toBe(a.fork('mask').next())
  })

  it('draws uniform integers and normals with the right moments (n = 200,000, 4-sigma tolerances)', () => {
    const r = createSeededRandom(123)
    const n = 200_000
    const counts = new Array<number>(10).fill(0)
    let sum = 0
    let sumSq = 0
    for (let i = 0; i < n; i++) {
      counts[r.int(10)]!++
      const z = r.normal()
      sum += z
      sumSq += z * z
    }
    // Each bucket ~ Binomial(n, 0.1): sd = sqrt(n * 0.09) ~ 134.
    for (const c of counts) expect(Math.abs(c - n / 10)).toBeLessThan(4 * 134)
    expect(Math.abs(sum / n)).toBeLessThan(4 / Math.sqrt(n))
    expect(Math.abs(sumSq / n - 1)).toBeLessThan(4 * Math.sqrt(2 / n))
  })

  it('refuses a bad range with a named error', () => {
    const r = createSeededRandom(1)
    expect(() => r.int(0)).toThrowError(expect.objectContaining({ name: 'InvalidArgumentError' }))
    expect(() => r.int(1.5)).toThrow(/int\(n\) needs an integer/)
  })
})

describe('manual clock', () => {
  it('moves only forward and only when told', () => {
    const c = createManualClock(1000)
    expect(c.now()).toBe(1000)
    c.advance(250)
    expect(c.now()).toBe(1250)
    expect(() => c.advance(-1)).toThrowError(expect.objectContaining({ name: 'InvalidArgumentError' }))
    expect(() => c.set(10)).toThrow(/only move forward/)
  })
})

describe('logger', () => {
  it('writes one JSON line per event at or above its level, with the namespace', () => {
    const lines: string[] = []
    const records: LogRecord[] = []
    const log = createLogger('forgemesh:mesh', {
      level: 'info',
      format: 'json',
      clock: createManualClock(0),
      sink: (line, record) => { lines.push(line); records.push(record) }
    })
    log.debug('hidden')
    log.info('peer:connected', { peer: 'p1', round: 3 })
    log.child('update').warn('frame:rejected', { reason: 'size' })
    expect(lines).toEqual([
      '{"time":"1970-01-01T00:00:00.000Z","level":"info","ns":"forgemesh:mesh","event":"peer:connected","peer":"p1","round":3}',
      '{"time":"1970-01-01T00:00:00.000Z","level":"warn","ns":"forgemesh:mesh:update","event":"frame:rejected","reason":"size"}'
    ])
    expect(records.map(r => r.event)).toEqual(['peer:connected', 'frame:rejected'])
  })

  it('a silent logger writes nothing and still has children', () => {
    const log = createSilentLogger('x')
    expect(log.child('y').namespace).toBe('x:y')
  })
})

describe('runtime polyfill', () => {
  it('provides Promise.withResolvers', async () => {
    const { promise, resolve } = Promise.withResolvers<number>()
    resolve(5)
    await expect(promise).resolves.toBe(5)
  })
})
