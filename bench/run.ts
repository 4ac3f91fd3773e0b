/**
 * Benchmark runner: `npm run bench -- <name> [args...]` runs bench/<name>.ts.
 *
 * A benchmark module exports `default async function (ctx): Promise<Figures>`.
 * It prints its own figures as it goes (through ctx.print); the runner then
 * prints one JSON object as the last stdout line: { bench, ...figures }.
 * Benchmarks compare against a baseline measured in the same run, so every
 * figure that matters is a ratio; absolute times on these machines drift.
 */
import '../node/runtime.ts'
import { existsSync, readdirSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { join } from 'node:path'

export type Figures = Record<string, number | string | boolean | null | Record<string, unknown> | unknown[]>

export interface BenchContext {
  args: string[]
  /** Human-readable progress and figures; never the last line. */
  print: (line: string) => void
}

export type Benchmark = (ctx: BenchContext) => Promise<Figures>

const benchDir = fileURLToPath(new URL('.', import.meta.url))

function available (): string[] {
  return readdirSync(benchDir).filter(f => f.endsWith('.ts') && f !== 'run.ts' && !f.startsWith('_')).map(f => f.slice(0, -3)).sort()
}

async function main (): Promise<number> {
  const [name, ...args] = process.argv.slice(2)
  if (name === undefined || name === '--help' || name === '-h') {
    process.stdout.write(`usage: npm run bench -- <name> [args]\nbenchmarks: ${available().join(', ')}\n`)
    return name === undefined ? 2 : 0
  }
  const file = join(benchDir, `${name}.ts`)
  if (!/^[a-z0-9-]+$/.test(name) || !existsSync(file)) {
    process.stderr.write(`unknown benchmark '${name}'; available: ${available().join(', ')}\n`)
    return 2
  }
  const mod = await import(pathToFileURL(file).href) as { default?: Benchmark }
  if (typeof mod.default !== 'function') {
    process.stderr.write(`bench/${name}.ts does not export a default benchmark function\n`)
    return 2
  }
  const figures = await mod.default({ args, print: (line) => { process.stdout.write(line + '\n') } })
  process.stdout.write(JSON.stringify({ bench: name, ...figures }) + '\n')
  return 0
}

main().then(code => { process.exitCode = code }, (err: unknown) => {
  process.stderr.write(`benchmark failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exitCode = 1
})
