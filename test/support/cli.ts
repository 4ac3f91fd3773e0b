/** The real `forgemesh` CLI in a child process, for the tests that drive it as a user would. */
import { execFile } from 'node:child_process'
import { join } from 'node:path'

export const CLI = join(import.meta.dirname, '..', '..', 'bin', 'forgemesh.js')

export interface CliResult {
  /** The exit status; 1 when the process ended without one (killed at the timeout, failed to start). */
  code: number
  stdout: string
  stderr: string
}

export interface CliOptions {
  cwd?: string
  /** Default 60 s: a command here answers in seconds, even on a loaded machine. */
  timeoutMs?: number
}

/** Runs `forgemesh ...args` to the end; resolves with its exit code and output, never rejects on a non-zero exit. */
export async function runCli (args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  return await new Promise(resolve => {
    execFile(process.execPath, [CLI, ...args], { cwd: options.cwd, timeout: options.timeoutMs ?? 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (typeof err.code === 'number' ? err.code : 1), stdout, stderr })
    })
  })
}

/** `forgemesh ...args` from this process's working directory. */
export async function forgemesh (...args: string[]): Promise<CliResult> {
  return await runCli(args)
}
