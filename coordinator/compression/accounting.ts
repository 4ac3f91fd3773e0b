/**
 * Byte accounting per round: what each site's update cost on the wire
 * against what it would have cost as plain float32, and the ratio.
 */
export interface SiteBytes {
  site: string
  rawBytes: number
  wireBytes: number
}

export interface RoundBytes {
  perSite: Array<SiteBytes & { ratio: number }>
  rawBytes: number
  wireBytes: number
  /** rawBytes / wireBytes over the whole round (1 when nothing was sent). */
  ratio: number
}

export function byteRatio (rawBytes: number, wireBytes: number): number {
  return wireBytes === 0 ? 1 : rawBytes / wireBytes
}

export function summarizeRoundBytes (sites: readonly SiteBytes[]): RoundBytes {
  const perSite = [...sites]
    .sort((a, b) => (a.site < b.site ? -1 : a.site > b.site ? 1 : 0))
    .map(s => ({ ...s, ratio: byteRatio(s.rawBytes, s.wireBytes) }))
  const rawBytes = perSite.reduce((t, s) => t + s.rawBytes, 0)
  const wireBytes = perSite.reduce((t, s) => t + s.wireBytes, 0)
  return { perSite, rawBytes, wireBytes, ratio: byteRatio(rawBytes, wireBytes) }
}
