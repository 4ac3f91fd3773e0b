/**
 * Exit codes of the CLI: every config-like named error of the project (its
 * code names CONFIG, SCHEMA, SPEC, TOPOLOGY or USAGE) exits 2, runtime
 * failures exit 1. The error classes are found by reading the source tree,
 * so a class added later in any layer is checked without editing this test.
 */
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { BAD_INPUT_CODES, exitCodeOf, UsageError } from '../bin/usage.ts'
import { QuorumNotReachedError, StrategyConfigError } from '../coordinator/errors.ts'
import { ModelSpecError, SpecMismatchError } from '../node/errors.ts'
import { ForgemeshError, FrameDecodeError } from '../protocols/errors.ts'
import { LAYERS, readTree } from './support/layers.ts'

const root = fileURLToPath(new URL('..', import.meta.url))
const CONFIG_LIKE = /CONFIG|SCHEMA|SPEC|TOPOLOGY|USAGE/
const CLASS_RE = /export\s+class\s+(\w+)\s+extends\s+\w+\s*\{[^}]*?\bcode(?:\s*:\s*string)?\s*=\s*'(ERR_\w+)'/g

/** [file, class name, code] of every named error class declared in the layers. */
function declaredErrors (): Array<[string, string, string]> {
  const out: Array<[string, string, string]> = []
  for (const [file, source] of readTree(root)) {
    if (!(LAYERS as readonly string[]).includes(file.split('/')[0]!)) continue
    for (const m of source.matchAll(CLASS_RE)) out.push([file, m[1]!, m[2]!])
  }
  return out
}

describe('CLI exit codes', () => {
  it('every config-like error class in the tree exits 2', async () => {
    const declared = declaredErrors()
    const configLike = declared.filter(([, , code]) => CONFIG_LIKE.test(code))
    // The ten known when this test was written; more may join, none may go missing from the map.
    for (const code of ['ERR_API_CONFIG', 'ERR_CONFIG', 'ERR_DATASET_SCHEMA', 'ERR_MODEL_SPEC', 'ERR_PRIVACY_CONFIG', 'ERR_SPEC_MISMATCH', 'ERR_STRATEGY_CONFIG', 'ERR_SYNTHETIC_SCHEMA', 'ERR_TOPOLOGY', 'ERR_USAGE']) {
      expect(configLike.map(([, , c]) => c)).toContain(code)
    }
    expect(configLike.filter(([, , code]) => !BAD_INPUT_CODES.has(code)).map(([file, name, code]) => `${file}: ${name} (${code})`)).toEqual([])

    // The same classes at run time: constructed from their modules, mapped by exitCodeOf as cli.ts does.
    const byFile = new Map<string, string[]>()
    for (const [file, name] of declared) byFile.set(file, [...(byFile.get(file) ?? []), name])
    let checked = 0
    for (const [file, names] of byFile) {
      const mod = await import(`../${file}`) as Record<string, new (message: string, detail: object) => ForgemeshError>
      for (const name of names) {
        // A second argument for the classes that carry details (audit seq, remote code); {} suits them all.
        const err = new mod[name]!('m', {})
        expect(err).toBeInstanceOf(ForgemeshError)
        expect(err.name).toBe(name)
        expect([name, exitCodeOf(err)]).toEqual([name, CONFIG_LIKE.test(err.code) || BAD_INPUT_CODES.has(err.code) ? 2 : 1])
        checked++
      }
    }
    expect(checked).toBe(declared.length)
    expect(checked).toBeGreaterThan(60)
  })

  it('maps the two codes that were missing, and leaves runtime failures at 1', () => {
    expect(exitCodeOf(new StrategyConfigError('invalid strategy config: kind: ...'))).toBe(2)
    expect(exitCodeOf(new SpecMismatchError('artifact built for another spec'))).toBe(2)
    expect(exitCodeOf(new ModelSpecError('invalid MoE spec: width: expected a number ≥ 1, got 0'))).toBe(2)
    expect(exitCodeOf(new UsageError('unknown option --x'))).toBe(2)
    expect(exitCodeOf(new QuorumNotReachedError('2 of 3'))).toBe(1)
    expect(exitCodeOf(new FrameDecodeError('short'))).toBe(1)
    expect(exitCodeOf(new Error('boom'))).toBe(1)
    expect(exitCodeOf('a string')).toBe(1)
  })
})
