/**
 * Named errors of the wire layer. Every error in forgemesh extends
 * ForgemeshError so callers can tell ours from a runtime failure, and each
 * carries a stable `code` that tests and the CLI's `--json` output use.
 */
export class ForgemeshError extends Error {
  override name = 'ForgemeshError'
  readonly code: string = 'ERR_FORGEMESH'
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options)
  }
}
