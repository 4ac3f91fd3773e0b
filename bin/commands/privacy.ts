/**
 * `forgemesh privacy epsilon|status`: what a DP training plan costs, and
 * what a site has spent. Thin: coordinator/dp/rdp.ts and
 * node/privacy/ledger.ts do the work.
 */
import { computeEpsilon } from '../../coordinator/dp/rdp.ts'
import { InvalidArgumentError } from '../../coordinator/errors.ts'
import { createPrivacyLedger, readLedgerBudget } from '../../node/privacy/ledger.ts'
import { openSiteStore } from '../../node/store.ts'
import { UsageError, helpText, parseArgs, type FlagSpec } from '../usage.ts'

const CONVERSION = 'RDP of the Poisson-subsampled Gaussian mechanism (Mironov et al. 2019), converted to (eps, delta) with Balle et al. 2020, Theorem 21 (as TF Privacy and Opacus)'

const EPSILON_FLAGS: FlagSpec = {
  'noise-multiplier': { type: 'number', help: 'z: noise std divided by the clip norm' },
  'sample-rate': { type: 'number', help: 'q: Poisson sampling probability per step (1 = every record / every site each step)' },
  steps: { type: 'number', help: 'N: number of steps (rounds, or DP-SGD iterations)' },
  delta: { type: 'number', help: 'the target delta' },
  json: { type: 'boolean', help: 'print one JSON object' },
  help: { type: 'boolean', help: 'this text' }
}

const STATUS_FLAGS: FlagSpec = {
  site: { type: 'string', help: 'the site store (a LevelDB folder; default .forgemesh/site)' },
  json: { type: 'boolean', help: 'print one JSON object' },
  help: { type: 'boolean', help: 'this text' }
}

const USAGE = [
  'usage: forgemesh privacy <epsilon|status> [options]',
  '',
  '  epsilon  eps of N steps of the subsampled Gaussian mechanism at a delta',
  '  status   eps and delta a site has spent and has left (its privacy ledger)',
  '',
  'Run \'forgemesh privacy <epsilon|status> --help\' for the options.'
].join('\n')

function need (flags: Record<string, unknown>, name: string): number {
  const v = flags[name]
  if (v === undefined) throw new UsageError(`--${name} is required`)
  return v as number
}

async function epsilon (argv: string[]): Promise<number> {
  const { flags, positionals } = parseArgs(argv, EPSILON_FLAGS)
  if (flags.help === true) {
    process.stdout.write(helpText('forgemesh privacy epsilon --noise-multiplier Z --sample-rate Q --steps N --delta D [--json]', `Prints eps. ${CONVERSION}.`, EPSILON_FLAGS) + '\n')
    return 0
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`)
  const z = need(flags, 'noise-multiplier')
  const q = need(flags, 'sample-rate')
  const steps = need(flags, 'steps')
  const delta = need(flags, 'delta')
  let result
  try {
    result = computeEpsilon({ noiseMultiplier: z, sampleRate: q, steps, delta })
  } catch (err) {
    // Out-of-range values are bad usage (exit 2), not a runtime failure.
    if (err instanceof InvalidArgumentError) throw new UsageError(err.message)
    throw err
  }
  if (flags.json === true) {
    process.stdout.write(JSON.stringify({ ok: true, epsilon: result.epsilon, delta, order: result.order, noiseMultiplier: z, sampleRate: q, steps, accountant: 'rdp', conversion: 'balle2020' }) + '\n')
  } else {
    process.stdout.write(`eps = ${result.epsilon.toPrecision(6)} at delta = ${delta} (optimal RDP order ${result.order})\n${CONVERSION}.\n`)
  }
  return 0
}

async function status (argv: string[]): Promise<number> {
  const { flags, positionals } = parseArgs(argv, STATUS_FLAGS)
  if (flags.help === true) {
    process.stdout.write(helpText('forgemesh privacy status [--site DIR] [--json]', 'Prints the eps and delta the site has spent and has left.', STATUS_FLAGS) + '\n')
    return 0
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`)
  const store = await openSiteStore(typeof flags.site === 'string' ? flags.site : '.forgemesh/site')
  try {
    const budget = await readLedgerBudget(store)
    if (budget === undefined) {
      if (flags.json === true) process.stdout.write(JSON.stringify({ ok: true, ledger: null }) + '\n')
      else process.stdout.write(`no privacy ledger in ${store.path} yet: nothing has been released\n`)
      return 0
    }
    const s = await createPrivacyLedger(store, budget).status()
    if (flags.json === true) {
      process.stdout.write(JSON.stringify({ ok: true, ledger: { ...s, spent: { ...s.spent, epsilon: Number.isFinite(s.spent.epsilon) ? s.spent.epsilon : null } } }) + '\n')
    } else {
      process.stdout.write([
        `budget     eps ${s.epsilonBudget}, delta ${s.delta}`,
        `spent      eps ${s.spent.epsilon.toPrecision(6)}, delta ${s.spent.delta}`,
        `remaining  eps ${s.remaining.epsilon.toPrecision(6)}, delta ${s.remaining.delta}`,
        `releases   ${s.releases}`
      ].join('\n') + '\n')
    }
    return 0
  } finally {
    await store.close()
  }
}

export async function run (argv: string[]): Promise<number> {
  const [sub, ...rest] = argv
  if (sub === undefined || sub === '--help' || sub === '-h') {
    process.stdout.write(USAGE + '\n')
    return sub === undefined ? 2 : 0
  }
  if (sub === 'epsilon') return await epsilon(rest)
  if (sub === 'status') return await status(rest)
  throw new UsageError(`unknown subcommand 'privacy ${sub}'. ${USAGE.split('\n')[0]!}`)
}
