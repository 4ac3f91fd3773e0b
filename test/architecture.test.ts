import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { findLayerViolations, importsOf, readTree } from './support/layers.ts'

const root = fileURLToPath(new URL('..', import.meta.url))

describe('layer arrow: protocols <- coordinator <- node <- sim <- bin', () => {
  it('holds for every import in the tree', () => {
    const files = readTree(root)
    expect(files.size).toBeGreaterThan(5)
    const violations = findLayerViolations(files).map(v => v.message)
    expect(violations).toEqual([])
  })

  it('names the file and the import when coordinator/ imports node/', () => {
    const files = new Map([
      ['coordinator/round.ts', "import { openStore } from '../node/store.ts'\nexport const x = 1\n"],
      ['node/store.ts', "import { x } from '../coordinator/round.ts'\n"]
    ])
    const violations = findLayerViolations(files)
    expect(violations).toHaveLength(1)
    expect(violations[0]!.file).toBe('coordinator/round.ts')
    expect(violations[0]!.message).toBe(
      "coordinator/round.ts imports '../node/store.ts': coordinator/ may not import node/ (the arrow is protocols <- coordinator <- node <- sim <- bin)"
    )
  })

  it('catches dynamic imports, re-exports and side-effect imports, and ignores comments', () => {
    const src = [
      "// import { a } from '../sim/a.ts'",
      "/* import '../bin/x.ts' */",
      "export { b } from '../sim/b.ts'",
      "const m = await import('../bin/cli.ts')",
      "import '../sim/c.ts'",
      "import type { T } from './t.ts'"
    ].join('\n')
    expect(importsOf(src)).toEqual(['../sim/b.ts', '../bin/cli.ts', '../sim/c.ts', './t.ts'])
    const violations = findLayerViolations(new Map([['node/x.ts', src]]))
    expect(violations.map(v => v.specifier)).toEqual(['../sim/b.ts', '../bin/cli.ts', '../sim/c.ts'])
  })

  it('refuses imports from bench/ or test/ inside a layer', () => {
    const violations = findLayerViolations(new Map([['protocols/p.ts', "import { h } from '../test/support/h.ts'\n"]]))
    expect(violations.map(v => v.message)).toEqual([
      "protocols/p.ts imports '../test/support/h.ts' from test/, which no layer may import"
    ])
  })
})

describe('raw data stays home', () => {
  it('forbids protocol handlers (node/mesh/) from importing node/data/', () => {
    const violations = findLayerViolations(new Map([['node/mesh/update.ts', "import { loadMnist } from '../data/mnist.ts'\n"]]))
    expect(violations.map(v => v.message)).toEqual([
      "node/mesh/update.ts imports '../data/mnist.ts': protocol handlers may not reach the site's raw data (node/data hands out batches to the trainer only)"
    ])
  })
})
