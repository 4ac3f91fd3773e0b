/**
 * The site's privacy ledger, in the store's `privacy` sublevel. Every
 * release of information derived from the site's data is charged here
 * BEFORE it leaves: each shared-parameter update, each expert trained with
 * DP-SGD, each synthetic data set, each routing release. A charge that would take the site past
 * its budget is refused with PrivacyBudgetExceededError and nothing is
 * recorded; callers check `canCharge` before doing any work, then `charge`
 * before sending.
 *
 * Accounting (see docs/privacy.md):
 * - Gaussian-mechanism releases (updates, DP-SGD experts) carry their RDP
 *   curve over LEDGER_ORDERS; curves add up (RDP composition), and the total
 *   is converted to eps once, at delta_rdp = delta - (sum of explicit deltas),
 *   with the Balle et al. 2020 conversion. Sequential rounds of the same
 *   mechanism therefore cost far less than summing per-round eps.
 * - zCDP releases (rho) join the RDP curve as rdp(alpha) = rho * alpha.
 * - Releases known only as (eps, delta) compose by basic composition: their
 *   eps and delta are added to the totals.
 */
import { z } from 'zod'
import type { Clock } from '../../coordinator/components.ts'
import { DEFAULT_ORDERS, epsilonFromRdp } from '../../coordinator/dp/rdp.ts'
import { InvalidArgumentError } from '../../coordinator/errors.ts'
import { describeIssues } from '../../protocols/validation.ts'
import { ConfigError, CorruptRecordError, PrivacyBudgetExceededError } from '../errors.ts'
import type { SiteStore } from '../store.ts'

export const LEDGER_ORDERS: readonly number[] = DEFAULT_ORDERS

/**
 * What a release was: a shared-parameter update, a DP-trained expert, a
 * synthetic data set, or routing statistics (the density router's moments).
 * Kinds are only ever added, so entries written by an older build still parse.
 */
export const LEDGER_KINDS = ['update', 'expert', 'synthetic', 'routing'] as const
export type LedgerKind = typeof LEDGER_KINDS[number]

export const ChargeSchema = z.object({
  kind: z.enum(LEDGER_KINDS),
  label: z.string().min(1).max(200),
  round: z.number().int().nonnegative().optional(),
  /** Explicit (eps, delta) for releases without an RDP curve. */
  epsilon: z.number().min(0).finite().optional(),
  delta: z.number().min(0).lt(1).optional(),
  /** RDP at each of LEDGER_ORDERS. */
  rdp: z.array(z.number().min(0)).length(LEDGER_ORDERS.length).optional(),
  /** zCDP parameter. */
  rho: z.number().min(0).finite().optional()
}).strict().refine(c => c.rdp !== undefined || c.rho !== undefined || c.epsilon !== undefined, { message: 'a charge needs rdp, rho or epsilon' })
export type Charge = z.input<typeof ChargeSchema>

/** A malformed charge is a bug in the caller: a named error that says which field. */
function parseCharge (input: Charge): z.infer<typeof ChargeSchema> {
  const r = ChargeSchema.safeParse(input)
  if (!r.success) throw new InvalidArgumentError(`invalid privacy charge: ${describeIssues(r.error.issues, input).join('; ')}`)
  return r.data
}

const StateSchema = z.object({
  version: z.literal(1),
  epsilonBudget: z.number().positive(),
  delta: z.number().gt(0).lt(1),
  rdp: z.array(z.number().min(0).nullable()).length(LEDGER_ORDERS.length), // null: JSON's Infinity
  explicitEpsilon: z.number().min(0),
  explicitDelta: z.number().min(0),
  releases: z.number().int().nonnegative()
})
export type LedgerState = z.infer<typeof StateSchema>

const EntrySchema = z.object({
  seq: z.number().int().positive(),
  kind: z.enum(LEDGER_KINDS),
  label: z.string(),
  round: z.number().int().nonnegative().optional(),
  accounting: z.enum(['rdp', 'explicit']),
  epsilon: z.number().nullable().optional(),
  delta: z.number().optional(),
  spentAfter: z.object({ epsilon: z.number().nullable(), delta: z.number() }),
  at: z.number().optional()
})
export type LedgerEntry = z.infer<typeof EntrySchema>

export interface PrivacyBudget { epsilonBudget: number, delta: number }
export interface Spent { epsilon: number, delta: number }
export interface Projection { ok: boolean, spentAfter: Spent, remainingAfter: Spent, reason?: string }

export interface PrivacyLedgerStatus extends PrivacyBudget {
  spent: Spent
  remaining: Spent
  releases: number
}

export interface PrivacyLedger {
  /** Would this charge fit? No side effects. */
  canCharge: (charge: Charge) => Promise<Projection>
  /** Records the charge, or throws PrivacyBudgetExceededError (nothing recorded). */
  charge: (charge: Charge) => Promise<LedgerEntry>
  spent: () => Promise<Spent>
  remaining: () => Promise<Spent>
  entries: () => Promise<LedgerEntry[]>
  status: () => Promise<PrivacyLedgerStatus>
}

const STATE_KEY = 'ledger/state'
const ENTRY_PREFIX = 'ledger/entry/'

const fromJson = (v: number | null): number => v ?? Infinity
const toJson = (v: number): number | null => Number.isFinite(v) ? v : null

export function emptyState (budget: PrivacyBudget): LedgerState {
  return { version: 1, ...budget, rdp: LEDGER_ORDERS.map(() => 0), explicitEpsilon: 0, explicitDelta: 0, releases: 0 }
}

/** eps and delta spent in a state. Pure. */
export function spentOf (state: LedgerState): Spent {
  const rdp = state.rdp.map(fromJson)
  const usesRdp = rdp.some(r => r > 0)
  if (!usesRdp) return { epsilon: state.explicitEpsilon, delta: state.explicitDelta }
  const deltaRdp = state.delta - state.explicitDelta
  if (!(deltaRdp > 0)) return { epsilon: Infinity, delta: state.delta }
  return { epsilon: epsilonFromRdp(rdp, LEDGER_ORDERS, deltaRdp).epsilon + state.explicitEpsilon, delta: state.delta }
}

/** The state after a charge, and whether it stays within budget. Pure. */
export function projectCharge (state: LedgerState, input: Charge): { state: LedgerState, projection: Projection, accounting: 'rdp' | 'explicit' } {
  const c = parseCharge(input)
  const next: LedgerState = { ...state, rdp: [...state.rdp], releases: state.releases + 1 }
  const rdpPart = c.rdp !== undefined || c.rho !== undefined
  if (rdpPart) {
    next.rdp = state.rdp.map((r, i) => toJson(fromJson(r) + (c.rdp?.[i] ?? 0) + (c.rho ?? 0) * LEDGER_ORDERS[i]!))
  } else {
    next.explicitEpsilon += c.epsilon ?? 0
    next.explicitDelta += c.delta ?? 0
  }
  const spentAfter = spentOf(next)
  const remainingAfter = { epsilon: Math.max(0, state.epsilonBudget - spentAfter.epsilon), delta: Math.max(0, state.delta - spentAfter.delta) }
  let reason: string | undefined
  if (next.explicitDelta > state.delta || (rdpPart && next.explicitDelta >= state.delta)) reason = `delta would reach ${next.explicitDelta} of the budget ${state.delta}`
  else if (!(spentAfter.epsilon <= state.epsilonBudget)) reason = `eps would reach ${spentAfter.epsilon.toPrecision(6)} of the budget ${state.epsilonBudget} (delta ${state.delta})`
  return { state: next, projection: { ok: reason === undefined, spentAfter, remainingAfter, ...(reason !== undefined ? { reason } : {}) }, accounting: rdpPart ? 'rdp' : 'explicit' }
}

/** The budget a site's ledger was created with, or undefined when it has none yet. */
export async function readLedgerBudget (store: SiteStore): Promise<PrivacyBudget | undefined> {
  const stored = await store.getJson('privacy', STATE_KEY, StateSchema)
  return stored === undefined ? undefined : { epsilonBudget: stored.epsilonBudget, delta: stored.delta }
}

export function createPrivacyLedger (store: SiteStore, budget: PrivacyBudget, components: { clock?: Clock } = {}): PrivacyLedger {
  if (!(budget.epsilonBudget > 0) || !Number.isFinite(budget.epsilonBudget)) throw new ConfigError(`privacy budget epsilon must be a finite number > 0, got ${budget.epsilonBudget}`)
  if (!(budget.delta > 0 && budget.delta < 1)) throw new ConfigError(`privacy budget delta must be in (0, 1), got ${budget.delta}`)
  let cached: LedgerState | undefined
  // Charges run one at a time, so two concurrent releases cannot both pass the check.
  let queue: Promise<unknown> = Promise.resolve()
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn)
    queue = run.catch(() => {})
    return run
  }

  const load = async (): Promise<LedgerState> => {
    if (cached !== undefined) return cached
    const stored = await store.getJson('privacy', STATE_KEY, StateSchema)
    if (stored !== undefined && (stored.epsilonBudget !== budget.epsilonBudget || stored.delta !== budget.delta)) {
      throw new ConfigError(`the privacy ledger in ${store.path} was opened with budget eps ${stored.epsilonBudget}, delta ${stored.delta}; it cannot be reopened with eps ${budget.epsilonBudget}, delta ${budget.delta} (a budget is not raised by restarting)`)
    }
    cached = stored ?? emptyState(budget)
    return cached
  }

  const status = async (): Promise<PrivacyLedgerStatus> => {
    const s = await load()
    const spent = spentOf(s)
    return { ...budget, spent, remaining: { epsilon: Math.max(0, budget.epsilonBudget - spent.epsilon), delta: Math.max(0, budget.delta - spent.delta) }, releases: s.releases }
  }

  return {
    canCharge: async (c) => serial(async () => projectCharge(await load(), c).projection),
    charge: async (c) => serial(async () => {
      const state = await load()
      const { state: next, projection, accounting } = projectCharge(state, c)
      const parsed = parseCharge(c)
      if (!projection.ok) {
        throw new PrivacyBudgetExceededError(`release '${parsed.label}' (${parsed.kind}) refused: ${projection.reason}; nothing was recorded or sent`)
      }
      const entry: LedgerEntry = {
        seq: next.releases,
        kind: parsed.kind,
        label: parsed.label,
        ...(parsed.round !== undefined ? { round: parsed.round } : {}),
        accounting,
        ...(parsed.epsilon !== undefined ? { epsilon: parsed.epsilon } : {}),
        ...(parsed.delta !== undefined ? { delta: parsed.delta } : {}),
        spentAfter: { epsilon: toJson(projection.spentAfter.epsilon), delta: projection.spentAfter.delta },
        ...(components.clock !== undefined ? { at: components.clock.now() } : {})
      }
      await store.batch([
        { sublevel: 'privacy', type: 'put', key: ENTRY_PREFIX + String(entry.seq).padStart(12, '0'), value: entry },
        { sublevel: 'privacy', type: 'put', key: STATE_KEY, value: next }
      ])
      cached = next
      return entry
    }),
    spent: async () => (await status()).spent,
    remaining: async () => (await status()).remaining,
    entries: async () => {
      const out: LedgerEntry[] = []
      for await (const [key, value] of store.entries('privacy', { gte: ENTRY_PREFIX, lt: ENTRY_PREFIX + '~' })) {
        let raw: unknown
        try { raw = JSON.parse(new TextDecoder().decode(value)) } catch { raw = undefined }
        const parsed = EntrySchema.safeParse(raw)
        if (!parsed.success) throw new CorruptRecordError(`privacy ledger entry ${key} in ${store.path} is corrupt`)
        out.push(parsed.data)
      }
      return out
    },
    status
  }
}
