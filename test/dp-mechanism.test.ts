import { describe, expect, it } from 'vitest'
import { createSeededRandom } from '../coordinator/components.ts'
import { clipAndNoise, clipAndNoiseTensors, dpSgdGradient } from '../coordinator/dp/gaussian.ts'
import { PrivacySettingsSchema, checkPrivacyComposition } from '../coordinator/dp/settings.ts'

const norm = (x: Float32Array): number => Math.sqrt(x.reduce((a, v) => a + v * v, 0))

describe('clip and Gaussian noise', () => {
  it('clips to the L2 norm exactly and leaves short updates alone when z = 0', () => {
    const r = createSeededRandom(1)
    const long = Float32Array.from({ length: 100 }, (_, i) => i % 7 - 3)
    const out = clipAndNoise(long, { clipNorm: 1.5, noiseMultiplier: 0 }, r)
    expect(out.clipped).toBe(true)
    expect(norm(out.values)).toBeCloseTo(1.5, 5)
    const short = new Float32Array([0.1, -0.2])
    expect([...clipAndNoise(short, { clipNorm: 1.5, noiseMultiplier: 0 }, r).values]).toEqual([...short])
  })

  it('adds noise with std z*C (and z*C/sqrt(k) when split k ways): n = 200,000, 4-sigma tolerances', () => {
    const n = 200_000
    for (const [k, want] of [[1, 0.8 * 2], [4, 0.8 * 2 / 2]] as const) {
      const out = clipAndNoise(new Float32Array(n), { clipNorm: 2, noiseMultiplier: 0.8, noiseShares: k }, createSeededRandom(7 + k))
      expect(out.sigma).toBeCloseTo(want, 12)
      let s = 0
      let s2 = 0
      for (const v of out.values) { s += v; s2 += v * v }
      expect(Math.abs(s / n)).toBeLessThan(4 * want / Math.sqrt(n))
      // Var of the sample variance of a normal: 2 sigma^4 / n.
      expect(Math.abs(s2 / n - want * want)).toBeLessThan(4 * Math.sqrt(2 / n) * want * want)
    }
  })

  it('is replayable from the seed, and takes one global norm over a TensorMap', () => {
    const a = clipAndNoise(new Float32Array(10), { clipNorm: 1, noiseMultiplier: 1 }, createSeededRandom('x'))
    const b = clipAndNoise(new Float32Array(10), { clipNorm: 1, noiseMultiplier: 1 }, createSeededRandom('x'))
    expect([...a.values]).toEqual([...b.values])
    const map = new Map([['a', { shape: [2], data: new Float32Array([3, 0]) }], ['b', { shape: [1], data: new Float32Array([4]) }]])
    const t = clipAndNoiseTensors(map, { clipNorm: 1, noiseMultiplier: 0 }, createSeededRandom(1))
    expect(t.norm).toBe(5)
    expect([...t.tensors.get('a')!.data].map(v => +v.toFixed(6))).toEqual([0.6, 0])
    expect([...t.tensors.get('b')!.data].map(v => +v.toFixed(6))).toEqual([0.8])
  })

  it('DP-SGD clips each example (or microbatch mean) before averaging', () => {
    const g = [new Float32Array([10, 0]), new Float32Array([0, 0.5]), new Float32Array([-10, 0]), new Float32Array([0, 0.5])]
    const perExample = dpSgdGradient(g, { clipNorm: 1, noiseMultiplier: 0 }, createSeededRandom(1))
    expect([...perExample]).toEqual([0, 0.25]) // (1 + 0 - 1 + 0) / 4, (0 + .5 + 0 + .5) / 4
    const micro = dpSgdGradient(g, { clipNorm: 1, noiseMultiplier: 0, microbatchSize: 2 }, createSeededRandom(1))
    // Microbatch means (5, .25) and (-5, .25), each clipped to norm 1.
    const f = 1 / Math.hypot(5, 0.25)
    expect(micro[0]).toBeCloseTo(0, 6)
    expect(micro[1]).toBeCloseTo(0.25 * f, 6)
    expect(() => dpSgdGradient(g, { clipNorm: 1, noiseMultiplier: 0, microbatchSize: 3 }, createSeededRandom(1))).toThrow(expect.objectContaining({ name: 'InvalidArgumentError', message: expect.stringContaining('microbatches of 3') }))
  })

  it('rejects bad options with named errors', () => {
    expect(() => clipAndNoise(new Float32Array(2), { clipNorm: 0, noiseMultiplier: 1 }, createSeededRandom(1))).toThrow(expect.objectContaining({ name: 'InvalidArgumentError', message: expect.stringContaining('clipNorm') }))
    expect(() => clipAndNoise(new Float32Array([NaN]), { clipNorm: 1, noiseMultiplier: 1 }, createSeededRandom(1))).toThrow(expect.objectContaining({ name: 'InvalidArgumentError', message: expect.stringContaining('non-finite') }))
  })
})

describe('privacy settings: what composes with what', () => {
  const base = { sites: 10, vectorLength: 1_000_000, strategy: { kind: 'fedavg' }, compression: { kind: 'none' } }
  const settings = (p: unknown) => PrivacySettingsSchema.parse(p)
  const refuses = (input: Parameters<typeof checkPrivacyComposition>[0], text: string): void => {
    expect(() => checkPrivacyComposition(input)).toThrow(expect.objectContaining({ name: 'PrivacyConfigError', message: expect.stringContaining(text) }))
  }

  it('secure aggregation with FedAvg and distributed noise resolves to a plan', () => {
    const plan = checkPrivacyComposition({ ...base, privacy: settings({ clipNorm: 1, secureAggregation: { enabled: true }, dp: { mode: 'distributed', noiseMultiplier: 1.2 }, budget: { epsilon: 8, delta: 1e-5 } }) })
    expect(plan.secureAggregation).toEqual({ threshold: 7, ringBits: 32, scale: (2 ** 31 / 10 - 2) / 1 })
    expect(plan.noiseStdPerSite).toBeCloseTo(1.2 / Math.sqrt(7), 12)
    expect(plan.accounting).toEqual({ noiseMultiplier: 1.2, sampleRate: 1 })
  })

  it('refuses robust aggregation under secure aggregation, naming the norm bound as the alternative', () => {
    for (const kind of ['median', 'trimmed-mean', 'krum', 'multi-krum']) {
      refuses({ ...base, strategy: { kind }, privacy: settings({ clipNorm: 1, secureAggregation: { enabled: true } }) }, `strategy '${kind}' needs to see each member's update`)
    }
    refuses({ ...base, strategy: { kind: 'krum' }, privacy: settings({ clipNorm: 1, secureAggregation: { enabled: true } }) }, 'clipped to clipNorm before masking')
  })

  it('refuses top-k under secure aggregation, secure aggregation without a clip norm, and split noise without secure aggregation', () => {
    refuses({ ...base, compression: { kind: 'topk' }, privacy: settings({ clipNorm: 1, secureAggregation: { enabled: true } }) }, "compression 'topk'")
    refuses({ ...base, privacy: settings({ secureAggregation: { enabled: true } }) }, 'needs privacy.clipNorm')
    refuses({ ...base, privacy: settings({ clipNorm: 1, dp: { mode: 'distributed', noiseMultiplier: 1 }, budget: { epsilon: 1, delta: 1e-5 } }) }, 'needs secureAggregation.enabled')
    refuses({ ...base, privacy: settings({ clipNorm: 1, dp: { mode: 'site', noiseMultiplier: 1 } }) }, 'privacy.budget')
    refuses({ ...base, privacy: settings({ clipNorm: 1, secureAggregation: { enabled: true, threshold: 5 } }) }, 'n/2 < threshold')
  })

  it('int8 compression composes as quantisation before masking in a 16-bit ring, when the rounding step allows', () => {
    const small = checkPrivacyComposition({ ...base, vectorLength: 10_000, compression: { kind: 'int8' }, privacy: settings({ clipNorm: 1, secureAggregation: { enabled: true } }) })
    expect(small.secureAggregation!.ringBits).toBe(16)
    refuses({ ...base, compression: { kind: 'int8' }, privacy: settings({ clipNorm: 1, secureAggregation: { enabled: true } }) }, 'Use ringBits 32')
  })

  it('robust aggregation with site-level DP and no secure aggregation is fine', () => {
    const plan = checkPrivacyComposition({ ...base, strategy: { kind: 'median' }, privacy: settings({ clipNorm: 0.5, dp: { mode: 'site', noiseMultiplier: 2 }, budget: { epsilon: 4, delta: 1e-6 } }) })
    expect(plan.secureAggregation).toBeUndefined()
    expect(plan.noiseStdPerSite).toBe(1)
  })

  it('rejects unknown fields with a zod error', () => {
    expect(PrivacySettingsSchema.safeParse({ secureAggregation: { enabled: true, bogus: 1 } }).success).toBe(false)
  })
})
