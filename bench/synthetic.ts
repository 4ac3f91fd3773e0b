/**
 * The DP synthetic-data generator, measured:
 *  1. the eps curve on a known tree-shaped distribution (20,000 rows): TVD of
 *     the true tree's edge marginals, synthetic vs the exact distribution and
 *     model vs the real rows (the error the noise adds), over eps;
 *  2. penguins (vega-datasets) over eps: the quality report's figures, against
 *     a baseline generator measured in the same run: independent columns (the
 *     whole budget on 1-way marginals, columns sampled independently). The
 *     ratios say what the spanning tree buys.
 * 3 seeds per point; means.
 */
import { readFileSync } from 'node:fs'
import { createSeededRandom, type Random } from '../coordinator/components.ts'
import { decodeRows, encodeRows, type Domain, type RawValue } from '../coordinator/synthetic/domain.ts'
import { assessQuality, splitHoldout, synthesize } from '../coordinator/synthetic/generator.ts'
import { addGaussian, countOneWay, countTwoWay, tvd } from '../coordinator/synthetic/marginals.ts'
import { fitMst, sampleMst } from '../coordinator/synthetic/mst.ts'
import { estimateTotal, projectSimplex } from '../coordinator/synthetic/consistency.ts'
import { gaussianSigma, rhoFromEpsDelta } from '../coordinator/synthetic/zcdp.ts'
import { planSynthesis } from '../node/data/synthetic/plan.ts'
import { parseDatasetPolicy, parseDatasetSchema } from '../node/data/schema.ts'
import type { BenchContext, Figures } from './run.ts'

const EPS = [0.1, 0.3, 1, 3, 10]
const DELTA = 1e-6
const SEEDS = 3

const SIZES = [4, 5, 3, 6, 2]
const PARENT = [-1, 0, 1, 0, 3]

function knownCond (): number[][][] {
  const rng = createSeededRandom('known-distribution')
  return SIZES.map((s, k) => k === 0 ? [[0.4, 0.3, 0.2, 0.1]] : Array.from({ length: SIZES[PARENT[k]!]! }, () => {
    const w = Array.from({ length: s }, () => Math.exp(1.5 * rng.normal()))
    const sum = w.reduce((a, b) => a + b)
    return w.map(x => x / sum)
  }))
}

function draw (p: number[], rng: Random): number {
  let u = rng.next()
  for (let k = 0; k < p.length; k++) { u -= p[k]!; if (u < 0) return k }
  return p.length - 1
}

function knownCurve (): { eps: number, truth: number, noise: number }[] {
  const cond = knownCond()
  const marg: number[][] = [cond[0]![0]!]
  for (let c = 1; c < SIZES.length; c++) marg[c] = Array.from({ length: SIZES[c]! }, (_, b) => marg[PARENT[c]!]!.reduce((s, pa, a) => s + pa * cond[c]![a]![b]!, 0))
  const exact = (k: number): Float64Array => Float64Array.from({ length: SIZES[PARENT[k]!]! * SIZES[k]! }, (_, idx) => {
    const a = Math.floor(idx / SIZES[k]!)
    return marg[PARENT[k]!]![a]! * cond[k]![a]![idx % SIZES[k]!]!
  })
  const out: { eps: number, truth: number, noise: number }[] = []
  for (const eps of EPS) {
    let truth = 0
    let noise = 0
    for (let s = 0; s < SEEDS; s++) {
      const rng = createSeededRandom(`real-${s}`)
      const n = 20_000
      const codes = SIZES.map(() => new Int32Array(n))
      for (let r = 0; r < n; r++) {
        codes[0]![r] = draw(cond[0]![0]!, rng)
        for (let k = 1; k < SIZES.length; k++) codes[k]![r] = draw(cond[k]![codes[PARENT[k]!]![r]!]!, rng)
      }
      const real = { n, codes }
      const model = fitMst(real, SIZES, { rho: rhoFromEpsDelta(eps, DELTA) }, createSeededRandom(`fit-${s}`))
      const syn = sampleMst(model, 100_000, createSeededRandom(`sample-${s}`))
      for (let k = 1; k < SIZES.length; k++) {
        truth += tvd(countTwoWay(syn, PARENT[k]!, k, SIZES), exact(k)) / 4 / SEEDS
        const e = model.edges.findIndex(([i, j]) => Math.min(i, j) === PARENT[k] && Math.max(i, j) === k)
        noise += (e < 0 ? 1 : tvd(model.twoWay[e]!, countTwoWay(real, model.edges[e]![0], model.edges[e]![1], SIZES))) / 4 / SEEDS
      }
    }
    out.push({ eps, truth: round(truth), noise: round(noise) })
  }
  return out
}

/** Baseline: every column on its own, the whole rho on 1-way marginals. */
function independentBaseline (domain: Domain, train: readonly (readonly RawValue[])[], eps: number, rows: number, random: Random): RawValue[][] {
  const enc = encodeRows(domain, train)
  const sigma = gaussianSigma(rhoFromEpsDelta(eps, DELTA), domain.sizes.length)
  const noisy = domain.sizes.map((s, j) => ({ values: addGaussian(countOneWay(enc, j, s), sigma, random), variance: sigma ** 2 }))
  const total = estimateTotal(noisy)
  const codes = noisy.map(m => {
    const p = projectSimplex(m.values, total)
    const cum: number[] = []
    let acc = 0
    for (const x of p) { acc += x / total; cum.push(acc) }
    return Int32Array.from({ length: rows }, () => { const u = random.next(); const k = cum.findIndex(c => u < c); return k < 0 ? cum.length - 1 : k })
  })
  return decodeRows(domain, { n: rows, codes }, random)
}

function penguins (ctx: BenchContext): Record<string, unknown>[] {
  const schemaJson = JSON.parse(readFileSync(new URL('../test/fixtures/synthetic/penguins.schema.json', import.meta.url), 'utf8')) as { columns: unknown, policy: unknown }
  const schema = parseDatasetSchema({ columns: schemaJson.columns })
  const plan = planSynthesis(schema, parseDatasetPolicy(schemaJson.policy))
  const raw = JSON.parse(readFileSync(new URL('../node_modules/vega-datasets/data/penguins.json', import.meta.url), 'utf8')) as Record<string, RawValue | null>[]
  const names = plan.domain.columns.map(c => c.name)
  const rows = raw.filter(r => names.every(n => r[n] !== null && r[n] !== '.')).map(r => names.map(n => r[n]!))
  const out: Record<string, unknown>[] = []
  for (const eps of EPS) {
    const acc = { tvd1: 0, tvd2: 0, efficacy: 0, exactMatch: 0, dcrMedian: 0, baseTvd2: 0, baseEfficacy: 0, ms: 0 }
    for (let s = 0; s < SEEDS; s++) {
      const rng = createSeededRandom(`penguins-${s}`)
      const split = splitHoldout(rows.length, 0.2, rng.fork('holdout'))
      const train = split.train.map(i => rows[i]!)
      const holdout = split.holdout.map(i => rows[i]!)
      const t0 = process.hrtime.bigint()
      const syn = synthesize(plan.domain, train, { epsilon: eps, delta: DELTA, rows: train.length }, rng.fork('generator'))
      acc.ms += Number(process.hrtime.bigint() - t0) / 1e6 / SEEDS
      const q = assessQuality(plan.domain, { train, holdout, synthetic: syn.rows }, { label: plan.label! }, rng.fork('quality'))
      const base = independentBaseline(plan.domain, train, eps, train.length, rng.fork('baseline'))
      const qb = assessQuality(plan.domain, { train, holdout, synthetic: base }, { label: plan.label! }, rng.fork('quality-baseline'))
      acc.tvd1 += q.fidelity.oneWay.mean / SEEDS
      acc.tvd2 += q.fidelity.twoWay.mean / SEEDS
      acc.efficacy += q.mlEfficacy!.ratio / SEEDS
      acc.exactMatch += q.privacy.exactMatchRate / SEEDS
      acc.dcrMedian += q.privacy.dcr.median / SEEDS
      acc.baseTvd2 += qb.fidelity.twoWay.mean / SEEDS
      acc.baseEfficacy += qb.mlEfficacy!.ratio / SEEDS
    }
    const fig = Object.fromEntries(Object.entries(acc).map(([k, v]) => [k, round(v)]))
    ctx.print(`penguins eps=${eps}: tvd1 ${fig.tvd1} tvd2 ${fig.tvd2} efficacy ${fig.efficacy} exact-match ${fig.exactMatch} dcr-median ${fig.dcrMedian} | independent baseline: tvd2 ${fig.baseTvd2} efficacy ${fig.baseEfficacy} | ${fig.ms} ms per run`)
    out.push({ eps, ...fig, tvd2_vs_independent: round(acc.tvd2 / acc.baseTvd2), efficacy_vs_independent: round(acc.efficacy / Math.max(1e-9, acc.baseEfficacy)) })
  }
  return out
}

export default async function bench (ctx: BenchContext): Promise<Figures> {
  const curve = knownCurve()
  for (const v of curve) ctx.print(`known distribution eps=${v.eps}: edge TVD synthetic vs exact ${v.truth}, model vs real rows ${v.noise}`)
  return { eps_curve: curve, penguins: penguins(ctx) }
}

function round (x: number): number { return Math.round(x * 10000) / 10000 }
