import { describe, expect, it } from 'vitest'
import { createSeededRandom } from '../coordinator/components.ts'
import { MIB, createLinkDirection, drawLossOffset } from '../sim/links/link.ts'
import { LinkSpec } from '../sim/topology.ts'

const spec = (over: Partial<LinkSpec>): LinkSpec => LinkSpec.parse(over)

describe('link arithmetic', () => {
  it('token bucket: 10 MB at 100 Mbit/s leaves in 0.8 s less the 16 KiB burst', () => {
    const dir = createLinkDirection(spec({ bandwidthMbps: 100 }), createSeededRandom(1))
    let last = 0
    for (let sent = 0; sent < 10_000_000; sent += 10_000) last = dir.admit(10_000, 0) as number
    expect(last).toBeCloseTo((10_000_000 - 16 * 1024) / 12_500, 9)
    expect(dir.bytes).toBe(10_000_000)
  })

  it('token bucket: an idle link refills only up to the burst', () => {
    const dir = createLinkDirection(spec({ bandwidthMbps: 8 }), createSeededRandom(1)) // 1000 bytes/ms, burst 16 KiB
    expect(dir.admit(16 * 1024, 0)).toBe(0)
    expect(dir.admit(1000, 0)).toBe(1)
    // After 1 s idle the bucket is full again (16 KiB), not 1 MB.
    expect(dir.admit(16 * 1024 + 5000, 1000)).toBe(1005)
  })

  it('latency adds a fixed one-way delay; unlimited bandwidth sends at once', () => {
    const dir = createLinkDirection(spec({ latencyMs: 100 }), createSeededRandom(1))
    expect(dir.admit(5 * MIB, 3)).toBe(103)
    expect(dir.admit(1, 50)).toBe(150)
  })

  it('jitter is seeded, never reorders, and averages to the latency (n = 10,000, 4 sigma)', () => {
    const run = (): number[] => {
      const dir = createLinkDirection(spec({ latencyMs: 100, jitterMs: 10 }), createSeededRandom(9))
      return Array.from({ length: 10_000 }, (_, i) => dir.admit(100, i * 1000) as number - i * 1000)
    }
    const delays = run()
    expect(run()).toEqual(delays)
    const mean = delays.reduce((a, b) => a + b, 0) / delays.length
    expect(Math.abs(mean - 100)).toBeLessThan(4 * 10 / Math.sqrt(delays.length))
    const burst = createLinkDirection(spec({ latencyMs: 100, jitterMs: 50 }), createSeededRandom(3))
    let prev = -Infinity
    for (let i = 0; i < 1000; i++) {
      const t = burst.admit(10, i * 0.01) as number
      expect(t).toBeGreaterThanOrEqual(prev)
      prev = t
    }
  })

  it('loss: the first lost byte is drawn once, geometric in bytes, from the seed', () => {
    expect(drawLossOffset(0, createSeededRandom(1))).toBe(Infinity)
    expect(drawLossOffset(1, createSeededRandom(1))).toBe(0)
    const r = createSeededRandom(5)
    const offsets = Array.from({ length: 4001 }, () => drawLossOffset(0.1, r)).sort((a, b) => a - b)
    // Median of the geometric: MiB × ln 0.5 / ln 0.9 ≈ 6.58 MiB; 4001 draws put it within 5%.
    const median = MIB * Math.log(0.5) / Math.log(0.9)
    expect(Math.abs(offsets[2000]! / median - 1)).toBeLessThan(0.05)

    const dir = createLinkDirection(spec({ loss: 0.1 }), createSeededRandom(11))
    const at = dir.lossAtByte
    expect(at).toBe(drawLossOffset(0.1, createSeededRandom(11)))
    expect(dir.admit(at, 0)).toBe(0)
    expect(dir.admit(1, 0)).toBe('lost')
  })
})
