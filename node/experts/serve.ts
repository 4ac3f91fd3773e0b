/**
 * Serving an assembled MoE through the site API (node/api.ts):
 * POST /v1/predict { inputs: number[][], exclude?: expertId[] } answers each
 * row's label, class probabilities and the experts that produced it with
 * their gate weights (attribution). `exclude` masks experts for that request
 * only, exactly as an opt-out does. Bad bodies get 400 with the reason.
 */
import { z } from 'zod'
import type { Logger } from '../../coordinator/components.ts'
import { ExpertId } from '../../protocols/experts-announce/records.ts'
import { createSiteApi, type ApiInit, type SiteApi } from '../api.ts'
import { AssemblyError, HttpError } from '../errors.ts'
import { describe } from './artifact.ts'
import type { AssembledMoe } from './assemble.ts'

/** Rows per request: bounds the work and memory one request can cause. */
export const MAX_PREDICT_ROWS = 1024

export interface Attribution { id: string, owner: string, weight: number }
export interface Prediction { label: number, probabilities: number[], experts: Attribution[] }
export interface PredictResponse { predictions: Prediction[] }

export function predictBodySchema (inputDim: number, maxRows = MAX_PREDICT_ROWS) {
  return z.strictObject({
    inputs: z.array(z.array(z.number().finite()).length(inputDim, `each input row must hold ${inputDim} numbers`)).min(1).max(maxRows),
    exclude: z.array(ExpertId).max(256).optional()
  })
}

/** Validates a predict body and answers it; bad input throws HttpError(400) with the reason. */
export function createPredictor (moe: AssembledMoe, options: { maxRows?: number } = {}): (body: unknown) => Promise<PredictResponse> {
  const { inputDim, classes, experts: E } = moe.spec
  const schema = predictBodySchema(inputDim, options.maxRows)
  return async (body) => {
    const parsed = schema.safeParse(body)
    if (!parsed.success) throw new HttpError(400, describe(parsed.error))
    const { inputs, exclude } = parsed.data
    const n = inputs.length
    const x = new Float32Array(n * inputDim)
    inputs.forEach((row, i) => { x.set(row, i * inputDim) })
    let out
    try {
      out = moe.predict(x, { exclude: exclude ?? [] })
    } catch (err) {
      if (err instanceof AssemblyError) throw new HttpError(400, `exclude: ${err.message}`)
      throw err
    }
    const predictions: Prediction[] = []
    for (let i = 0; i < n; i++) {
      const probabilities = Array.from(out.probabilities.subarray(i * classes, (i + 1) * classes))
      let label = 0
      for (let c = 1; c < classes; c++) if (probabilities[c]! > probabilities[label]!) label = c
      const experts: Attribution[] = []
      for (let e = 0; e < E; e++) {
        const weight = out.gates[i * E + e]!
        const slot = moe.slots[e]
        if (weight > 0 && slot !== undefined) experts.push({ id: slot.id, owner: slot.owner, weight })
      }
      experts.sort((a, b) => b.weight - a.weight)
      predictions.push({ label, probabilities, experts })
    }
    return { predictions }
  }
}

/** The site API serving one model: /v1/predict, /status (what is served) and /metrics. */
export function createModelServer (moe: AssembledMoe, init: ApiInit & { maxRows?: number, describe?: Record<string, unknown> }, components: { logger: Logger }): SiteApi {
  const predict = createPredictor(moe, { maxRows: init.maxRows })
  let requests = 0
  let rows = 0
  let refused = 0
  return createSiteApi({ ...init, maxBodyBytes: init.maxBodyBytes ?? 32 * 1024 * 1024 }, {
    status: () => ({
      ...init.describe,
      experts: moe.slots.filter(s => s !== undefined).map(s => ({ slot: s.slot, id: s.id, owner: s.owner, artifact: s.hash, usable: moe.mask[s.slot] === 1 })),
      router: moe.router.kind,
      requests
    }),
    metrics: async () => ({
      contentType: 'text/plain; version=0.0.4; charset=utf-8',
      body: [
        '# HELP forgemesh_predict_requests_total Predict requests answered.',
        '# TYPE forgemesh_predict_requests_total counter',
        `forgemesh_predict_requests_total ${requests}`,
        '# HELP forgemesh_predict_rows_total Input rows predicted.',
        '# TYPE forgemesh_predict_rows_total counter',
        `forgemesh_predict_rows_total ${rows}`,
        '# HELP forgemesh_predict_refused_total Predict requests refused as bad input.',
        '# TYPE forgemesh_predict_refused_total counter',
        `forgemesh_predict_refused_total ${refused}`,
        ''
      ].join('\n')
    }),
    predict: async (body) => {
      try {
        const out = await predict(body)
        requests++
        rows += out.predictions.length
        return out
      } catch (err) {
        if (err instanceof HttpError) refused++
        throw err
      }
    }
  }, components)
}
