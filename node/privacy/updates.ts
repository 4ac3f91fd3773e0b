/**
 * Per-federation wiring of privacy into the update path of a site:
 *   clip -> DP noise (charged to the ledger) -> hand to `send`
 * (which, under secure aggregation, quantises and masks with the secagg
 * client before anything reaches the mesh). The ledger is checked before
 * any work and charged before `send` runs: a site whose budget is spent
 * never calls `send`, so no update frame can leave it.
 */
import type { Logger, Random } from '../../coordinator/components.ts'
import { clipAndNoiseTensors } from '../../coordinator/dp/gaussian.ts'
import { rdpGaussian } from '../../coordinator/dp/rdp.ts'
import { checkPrivacyComposition, type CompositionInput, type PrivacyPlan, type PrivacySettings } from '../../coordinator/dp/settings.ts'
import { PrivacyConfigError } from '../../coordinator/errors.ts'
import type { TensorMap } from '../../protocols/tensors.ts'
import { ConfigError, PrivacyBudgetExceededError } from '../errors.ts'
import { LEDGER_ORDERS, type Charge, type LedgerEntry, type PrivacyLedger } from './ledger.ts'

export interface PrivateUpdatesInit {
  settings: PrivacySettings
  plan: PrivacyPlan
}

export interface PrivateUpdatesComponents {
  ledger: PrivacyLedger
  random: Random
  logger: Logger
}

export interface ReleaseResult<T> {
  sent: T
  entry?: LedgerEntry
}

export interface PrivateUpdates {
  /** The charge one round's update costs (undefined when DP is off: nothing to charge). */
  chargeFor: (round: number) => Charge | undefined
  /**
   * Clips and noises `delta`, charges the ledger, then calls `send`. Throws
   * PrivacyBudgetExceededError before clipping, noising or sending anything
   * when the budget would be exceeded.
   */
  release: <T>(round: number, delta: TensorMap, send: (tensors: TensorMap, signal?: AbortSignal) => Promise<T>, options?: { signal?: AbortSignal }) => Promise<ReleaseResult<T>>
}

/** checkPrivacyComposition with its PrivacyConfigError turned into the node's ConfigError (exit code 2 at the CLI). */
export function resolvePrivacyPlan (input: CompositionInput): PrivacyPlan {
  try {
    return checkPrivacyComposition(input)
  } catch (err) {
    if (err instanceof PrivacyConfigError) throw new ConfigError(`privacy settings: ${err.message}`, { cause: err })
    throw err
  }
}

export function createPrivateUpdates (init: PrivateUpdatesInit, components: PrivateUpdatesComponents): PrivateUpdates {
  const { settings, plan } = init
  const log = components.logger.child('privacy')
  const dpOn = plan.accounting !== undefined
  // One round is one step of the Gaussian mechanism: its RDP curve is the same every round.
  const perRound = dpOn ? rdpGaussian(plan.accounting!.sampleRate, plan.accounting!.noiseMultiplier, LEDGER_ORDERS) : undefined

  const chargeFor = (round: number): Charge | undefined =>
    perRound === undefined ? undefined : { kind: 'update', label: `update round ${round}`, round, rdp: perRound }

  return {
    chargeFor,
    release: async (round, delta, send, options = {}) => {
      options.signal?.throwIfAborted()
      const charge = chargeFor(round)
      if (charge !== undefined) {
        const p = await components.ledger.canCharge(charge)
        if (!p.ok) {
          log.warn('update.refused', { round, reason: p.reason })
          throw new PrivacyBudgetExceededError(`update for round ${round} refused: ${p.reason}; nothing was sent`)
        }
      }
      const clipNorm = settings.clipNorm
      const tensors = clipNorm === undefined
        ? delta
        : clipAndNoiseTensors(delta, { clipNorm, noiseMultiplier: dpOn ? plan.accounting!.noiseMultiplier : 0, noiseShares: settings.dp.mode === 'distributed' ? plan.secureAggregation!.threshold : 1 }, components.random.fork(`dp/round/${round}`)).tensors
      options.signal?.throwIfAborted()
      // Charged before sending: a crash in between over-counts, which is the safe side.
      const entry = charge === undefined ? undefined : await components.ledger.charge(charge)
      if (entry !== undefined) log.info('update.charged', { round, spentEpsilon: entry.spentAfter.epsilon })
      const sent = await send(tensors, options.signal)
      return entry === undefined ? { sent } : { sent, entry }
    }
  }
}
