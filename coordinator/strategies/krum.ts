/**
 * Krum and Multi-Krum (Blanchard et al. 2017). Each update is scored by the
 * sum of squared distances to its n - f - 2 nearest others (at least one, as
 * Flower does, so the rule is defined for small n); Krum keeps the best
 * update, Multi-Krum averages the m best. Ties go to the smaller site id.
 * The paper's guarantee needs n >= 2f + 3; below that the rule still runs
 * but only as a heuristic. Sample counts are ignored (robust rule).
 */
import { InvalidUpdatesError } from '../errors.ts'
import { applyStep, checkUpdates } from './common.ts'
import type { SiteUpdate, Strategy } from './types.ts'

export interface KrumConfig {
  kind: 'krum' | 'multi-krum'
  /** Number of Byzantine sites tolerated. */
  f: number
  /** How many updates to average; Krum is m = 1. Multi-Krum defaults to n - f. */
  m?: number
  serverLr: number
}

/** Indices (into the site-sorted updates) of the m best Krum scores, best first. */
export function krumSelect (sorted: readonly SiteUpdate[], f: number, m: number): number[] {
  const n = sorted.length
  if (n < f + 2) throw new InvalidUpdatesError(`krum with f=${f} needs at least ${f + 2} updates, got ${n}`)
  if (m < 1 || m > n - f) throw new InvalidUpdatesError(`krum can average m=${m} of ${n} updates with f=${f}; expected 1 <= m <= ${n - f}`)
  const dist = Array.from({ length: n }, () => new Float64Array(n))
  for (let a = 0; a < n; a++) {
    for (let b = a + 1; b < n; b++) {
      const da = sorted[a]!.delta
      const db = sorted[b]!.delta
      let s = 0
      for (let i = 0; i < da.length; i++) {
        const d = da[i]! - db[i]!
        s += d * d
      }
      dist[a]![b] = s
      dist[b]![a] = s
    }
  }
  const neighbours = Math.max(1, n - f - 2)
  const scores = dist.map((row, a) => {
    const others = [...row].filter((_, b) => b !== a).sort((x, y) => x - y)
    return others.slice(0, neighbours).reduce((s, d) => s + d, 0)
  })
  return scores.map((s, i) => ({ s, i })).sort((x, y) => x.s - y.s || x.i - y.i).slice(0, m).map(x => x.i)
}

export function createKrum (config: KrumConfig): Strategy {
  return {
    name: config.kind,
    aggregate: (updates, global) => {
      const sorted = checkUpdates(updates, global)
      const m = config.kind === 'krum' ? 1 : config.m ?? sorted.length - config.f
      const chosen = krumSelect(sorted, config.f, m).sort((a, b) => a - b)
      const step = new Float64Array(global.length)
      for (const c of chosen) {
        const d = sorted[c]!.delta
        for (let i = 0; i < step.length; i++) step[i]! += d[i]! / chosen.length
      }
      return { next: applyStep(global, step, config.serverLr), state: { selected: chosen.map(c => sorted[c]!.site) } }
    }
  }
}
