/**
 * The project's guard on its own architecture: imports go one way,
 * protocols <- coordinator <- node <- sim <- bin (ARCHITECTURE.md).
 * bench/ and test/ sit outside the arrow and may import any layer.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, normalize, relative, sep } from 'node:path'

export const LAYERS = ['protocols', 'coordinator', 'node', 'sim', 'bin'] as const
export type Layer = typeof LAYERS[number]

/** Extra edges that are forbidden inside the arrow: [importer prefix, imported prefix, why]. */
export const FORBIDDEN_EDGES: Array<[string, string, string]> = [
  ['node/mesh/', 'node/data/', 'protocol handlers may not reach the site\'s raw data (node/data hands out batches to the trainer only)']
]

export interface Violation {
  file: string
  specifier: string
  message: string
}

const IMPORT_RE = /(?:^|[\s;])(?:import|export)\s[^'"`]*?from\s*['"]([^'"]+)['"]|(?:^|[\s;(=])import\s*\(\s*['"]([^'"]+)['"]\s*\)|(?:^|[\s;])import\s*['"]([^'"]+)['"]/gm

/** Every module specifier a TypeScript source imports or re-exports. */
export function importsOf (source: string): string[] {
  const withoutComments = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1')
  const found: string[] = []
  for (const m of withoutComments.matchAll(IMPORT_RE)) {
    const spec = m[1] ?? m[2] ?? m[3]
    if (spec !== undefined) found.push(spec)
  }
  return found
}

function layerOf (path: string): Layer | undefined {
  const top = path.split('/')[0]
  return (LAYERS as readonly string[]).includes(top ?? '') ? top as Layer : undefined
}

/**
 * Checks a set of files (repo-relative path with '/' separators -> source).
 * Returns one violation per offending import, naming the file and the import.
 */
export function findLayerViolations (files: Map<string, string>): Violation[] {
  const violations: Violation[] = []
  for (const [file, source] of files) {
    const from = layerOf(file)
    if (from === undefined) continue
    for (const specifier of importsOf(source)) {
      if (!specifier.startsWith('.')) continue
      const target = normalize(join(dirname(file), specifier)).split(sep).join('/')
      if (target.startsWith('..')) {
        violations.push({ file, specifier, message: `${file} imports '${specifier}', which is outside the project tree` })
        continue
      }
      const to = layerOf(target)
      if (to === undefined) {
        violations.push({ file, specifier, message: `${file} imports '${specifier}' from ${target.split('/')[0]}/, which no layer may import` })
        continue
      }
      if (LAYERS.indexOf(to) > LAYERS.indexOf(from)) {
        violations.push({
          file,
          specifier,
          message: `${file} imports '${specifier}': ${from}/ may not import ${to}/ (the arrow is ${LAYERS.join(' <- ')})`
        })
      }
      for (const [importer, imported, why] of FORBIDDEN_EDGES) {
        if (file.startsWith(importer) && target.startsWith(imported)) {
          violations.push({ file, specifier, message: `${file} imports '${specifier}': ${why}` })
        }
      }
    }
  }
  return violations
}

/** Reads every .ts file of the layers and of bench/ and test/ under `root`. */
export function readTree (root: string): Map<string, string> {
  const files = new Map<string, string>()
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      if (name === 'node_modules' || name.startsWith('.')) continue
      const full = join(dir, name)
      if (statSync(full).isDirectory()) walk(full)
      else if (name.endsWith('.ts')) files.set(relative(root, full).split(sep).join('/'), readFileSync(full, 'utf8'))
    }
  }
  for (const top of [...LAYERS, 'bench', 'test']) {
    try { walk(join(root, top)) } catch { /* folder not present yet */ }
  }
  return files
}
