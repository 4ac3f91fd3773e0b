/**
 * What every in-process runner shares: typed options with the recipe's
 * defaults, checked once; the pathological split into sites; the per-round
 * record and result shapes the simulator's report reads.
 */
import { partitionByLabelGroups } from '../../coordinator/partition.ts'
import { createCompressor, parseCompressionConfig, type CompressionConfig, type CompressionConfigInput, type Compressor } from '../../coordinator/compression/combined.ts'
import { createBatchSource, subset, type SeededBatchSource } from '../data/batches.ts'
import type { LabeledData } from '../data/types.ts'
import { FederationError } from '../errors.ts'
import { RECIPE } from './recipe.ts'

export interface FederationRunOptions {
  train: LabeledData
  /** Evaluation set (the full 10,000-image MNIST test set in the flagship). */
  test: LabeledData
  /** Labels of each site; site s owns expert s. */
  groups: number[][]
  /** Each site's training rows, when the split is not by label groups (the simulator's partitioners); overrides `groups` for the split. */
  siteIndices?: readonly Int32Array[]
  rounds: number
  /** Rounds after which to evaluate; default only the last. */
  evalRounds?: readonly number[]
  /** Seeds model init, batch order and DP noise. Default 0. */
  seed?: number
  localSteps?: number
  batchSize?: number
  lr?: number
  width?: number
  expertHidden?: number
  /** Experts mixed per row at assembly (the MoE runners). Default 2. */
  topK?: 1 | 2
  /** How shared updates would travel (byte accounting; 'none' = float32). Default none. */
  compression?: CompressionConfigInput
  signal?: AbortSignal
  /** Called after every evaluation. */
  onRecord?: (method: string, record: RoundRecord) => void
}

export interface RoundRecord {
  round: number
  accuracy: number
  loss: number
  /** Bytes one site has sent by the end of this round, one direction (uplink), one-time costs included. */
  bytesSent: number
}

export interface FinalFigures {
  accuracy: number
  loss: number
  perClassAccuracy: number[]
}

export interface RunResult {
  method: string
  rounds: RoundRecord[]
  final: FinalFigures
  /** Seconds of wall time the whole run took. */
  seconds: number
}

export interface ResolvedOptions {
  rounds: number
  evalRounds: Set<number>
  seed: number
  localSteps: number
  batchSize: number
  lr: number
  width: number
  expertHidden: number
  topK: 1 | 2
  compression: CompressionConfig
}

const posInt = (v: number, what: string): number => {
  if (!Number.isInteger(v) || v < 1) throw new FederationError(`${what} must be a positive integer, got ${v}`)
  return v
}

export function resolveOptions (o: FederationRunOptions): ResolvedOptions {
  const rounds = posInt(o.rounds, 'rounds')
  if (o.groups.length < 1 && (o.siteIndices?.length ?? 0) < 1) throw new FederationError('a federation needs at least one site')
  if (o.train.dim !== o.test.dim) throw new FederationError(`train rows have ${o.train.dim} features, test rows ${o.test.dim}`)
  const evalRounds = new Set(o.evalRounds ?? [rounds])
  for (const r of evalRounds) if (!Number.isInteger(r) || r < 0 || r > rounds) throw new FederationError(`evaluation round ${r} is outside 0..${rounds}`)
  const lr = o.lr ?? RECIPE.lr
  if (!(lr > 0) || !Number.isFinite(lr)) throw new FederationError(`lr must be a positive finite number, got ${lr}`)
  return {
    rounds,
    evalRounds,
    seed: o.seed ?? 0,
    localSteps: posInt(o.localSteps ?? RECIPE.localSteps, 'localSteps'),
    batchSize: posInt(o.batchSize ?? RECIPE.batchSize, 'batchSize'),
    lr,
    width: posInt(o.width ?? RECIPE.width, 'width'),
    expertHidden: posInt(o.expertHidden ?? RECIPE.expertHidden, 'expertHidden'),
    topK: o.topK ?? RECIPE.topK,
    compression: parseCompressionConfig(o.compression ?? { kind: 'none' })
  }
}

export interface SiteData {
  site: number
  labels: number[]
  /** The site's rows (copies), for its routing releases. */
  data: LabeledData
  source: SeededBatchSource
}

/** The pathological split: each site gets every training row of its labels; its batches are seeded per site. */
export function splitSites (train: LabeledData, groups: number[][], seed: number, siteIndices?: readonly Int32Array[]): SiteData[] {
  const indices = siteIndices ?? partitionByLabelGroups(train.y, groups).indices
  return indices.map((ix, s) => {
    if (ix.length === 0) throw new FederationError(`site ${s} (labels ${(groups[s] ?? []).join(', ')}) has no training rows`)
    const labels = groups[s] ?? [...new Set(Array.from(ix, i => train.y[i]!))].sort((a, b) => a - b)
    return { site: s, labels: [...labels], data: subset(train, ix), source: createBatchSource(train, { seed: `${seed}/site-${s}`, indices: ix }) }
  })
}

/** One compressor per site (error feedback keeps per-site state). */
export function siteCompressors (config: CompressionConfig, sites: number, length: number): Compressor[] {
  return Array.from({ length: sites }, () => createCompressor(config, { length }))
}

/** delta = start - local (the strategies' convention). */
export function pseudoGradient (start: Float32Array, local: Float32Array): Float32Array {
  const d = new Float32Array(start.length)
  for (let i = 0; i < d.length; i++) d[i] = start[i]! - local[i]!
  return d
}

export const finalOf = (e: { accuracy: number, loss: number, perClassAccuracy: number[] }): FinalFigures =>
  ({ accuracy: e.accuracy, loss: e.loss, perClassAccuracy: e.perClassAccuracy })
