/**
 * Argument parsing and dispatch for `forgemesh`. Thin: every command lives in
 * bin/commands/<name>.ts and calls into node/ or sim/.
 *
 * Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config.
 */
import '../node/runtime.ts'
import { COMMANDS } from './commands.ts'
import { UsageError, exitCodeOf, formatError } from './usage.ts'

const VERSION = '0.1.0'

function topHelp (): string {
  const width = Math.max(0, ...Object.keys(COMMANDS).map(n => n.length))
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`)
  return [
    'forgemesh — a peer-to-peer federated training mesh',
    '',
    'usage: forgemesh <command> [options]',
    '',
    'commands:',
    ...lines,
    '',
    'Every command takes --help and --json. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or config.'
  ].join('\n')
}

async function main (argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(topHelp() + '\n')
    return name === undefined ? 2 : 0
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(VERSION + '\n')
    return 0
  }
  const command = COMMANDS[name]
  if (command === undefined) throw new UsageError(`unknown command '${name}'. Run 'forgemesh --help' for the list.`)
  const mod = await command.load()
  return await mod.run(rest)
}

const json = process.argv.includes('--json')
main(process.argv.slice(2)).then(code => { process.exitCode = code }, (err: unknown) => {
  const code = exitCodeOf(err)
  if (json) process.stdout.write(JSON.stringify({ ok: false, error: formatError(err) }) + '\n')
  else process.stderr.write(`forgemesh: ${formatError(err).message}\n`)
  process.exitCode = code
})
