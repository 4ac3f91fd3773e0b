/**
 * `forgemesh export`: assembles the MoE from a site's registry (or from
 * artifact files) and writes model.safetensors + manifest.json. Thin:
 * node/experts/{sources,assemble,export}.ts do the work. Artifacts that fail
 * verification are reported and left out; the export goes on without them.
 */
import { readFile } from 'node:fs/promises'
import { z } from 'zod'
import { createSilentLogger } from '../../coordinator/components.ts'
import { systemClock } from '../../node/components.ts'
import { ConfigError } from '../../node/errors.ts'
import { memberKeys } from '../../node/experts/artifact.ts'
import { assembleMoe } from '../../node/experts/assemble.ts'
import { exportModel, sharedFromSafetensors } from '../../node/experts/export.ts'
import { createExpertRegistry } from '../../node/experts/registry.ts'
import { artifactsFromFiles, artifactsFromRegistry, type CollectedArtifacts } from '../../node/experts/sources.ts'
import { selectBackend } from '../../node/model/backend.ts'
import type { MoeSpec } from '../../node/model/spec.ts'
import { openSiteStore, type SiteStore } from '../../node/store.ts'
import type { TensorMap } from '../../protocols/tensors.ts'
import { UsageError, helpText, parseArgs, type FlagSpec } from '../usage.ts'

const FLAGS: FlagSpec = {
  site: { type: 'string', help: 'the site store (a LevelDB folder): its committed shared parameters and usable experts' },
  shared: { type: 'string', help: 'shared parameters file (safetensors with the spec in its metadata), instead of the site\'s' },
  artifacts: { type: 'string', help: 'comma-separated expert artifact files to add (needs --members)' },
  members: { type: 'string', help: 'JSON file: an array of member peer ids whose signatures are accepted' },
  out: { type: 'string', help: 'the folder to write model.safetensors and manifest.json into' },
  'opt-out': { type: 'string', help: 'comma-separated expert ids to mask (not exported)' },
  'router-rows': { type: 'string', help: '"shared" (default): the learned router as trained; "artifacts": each expert\'s own router row' },
  metrics: { type: 'string', help: 'JSON file of figures for the whole model, e.g. {"accuracy": 0.97}' },
  json: { type: 'boolean', help: 'print one JSON object' },
  help: { type: 'boolean', help: 'this text' }
}
const USAGE = 'forgemesh export (--site DIR [--shared FILE] | --shared FILE) [--artifacts A,B --members FILE] --out DIR [--opt-out ID,..] [--json]'

const list = (v: unknown): string[] => typeof v === 'string' ? v.split(',').map(s => s.trim()).filter(s => s !== '') : []

async function readJson<S extends z.ZodType> (path: string, schema: S, what: string): Promise<z.infer<S>> {
  let json: unknown
  try {
    json = JSON.parse(await readFile(path, 'utf8'))
  } catch (err) {
    throw new ConfigError(`${what} ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : 'not valid JSON'}`)
  }
  const parsed = schema.safeParse(json)
  if (!parsed.success) throw new ConfigError(`${what} ${path}: ${parsed.error.issues[0]?.message ?? 'invalid'}`)
  return parsed.data
}

export async function run (argv: string[]): Promise<number> {
  const { flags, positionals } = parseArgs(argv, FLAGS)
  if (flags.help === true) {
    process.stdout.write(helpText(USAGE, 'Assembles the shared MoE from committed shared parameters and the verified experts, and writes it as safetensors plus a manifest (architecture, experts with hashes and owners, metrics).', FLAGS) + '\n')
    return 0
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]!}'`)
  const out = flags.out as string | undefined
  if (out === undefined) throw new UsageError('--out is required')
  const siteDir = flags.site as string | undefined
  const sharedFile = flags.shared as string | undefined
  if (siteDir === undefined && sharedFile === undefined) throw new UsageError('give --site DIR, or --shared FILE with --artifacts')
  const files = list(flags.artifacts)
  if (files.length > 0 && flags.members === undefined) throw new UsageError('--artifacts needs --members: the peer ids whose signatures count')
  const rows = (flags['router-rows'] as string | undefined) ?? 'shared'
  if (rows !== 'shared' && rows !== 'artifacts') throw new UsageError(`--router-rows must be shared or artifacts, got '${rows}'`)
  const metrics = flags.metrics === undefined ? {} : await readJson(flags.metrics as string, z.record(z.string(), z.number().finite()), 'metrics file')

  await selectBackend('cpu', createSilentLogger())
  let store: SiteStore | undefined
  try {
    let spec: MoeSpec
    let shared: TensorMap
    let round: number | undefined
    if (sharedFile !== undefined) {
      ({ spec, shared } = sharedFromSafetensors(new Uint8Array(await readFile(sharedFile)), sharedFile))
    }
    const collected: CollectedArtifacts = { artifacts: [], rejected: [] }
    if (siteDir !== undefined) {
      store = await openSiteStore(siteDir)
      const registry = createExpertRegistry({ store, clock: systemClock })
      if (sharedFile === undefined) {
        const snap = await registry.getShared()
        if (snap === undefined) throw new ConfigError(`site ${siteDir} holds no committed shared parameters yet; pass --shared FILE`)
        ;({ spec, params: shared, round } = snap)
      }
      const fromSite = await artifactsFromRegistry(registry, spec!)
      collected.artifacts.push(...fromSite.artifacts)
      collected.rejected.push(...fromSite.rejected)
    }
    if (files.length > 0) {
      const ids = await readJson(flags.members as string, z.array(z.string()).max(10_000), 'members file')
      const fromFiles = await artifactsFromFiles(files, { members: memberKeys(ids), spec: spec! })
      collected.artifacts.push(...fromFiles.artifacts)
      collected.rejected.push(...fromFiles.rejected)
    }
    const moe = assembleMoe({ spec: spec!, shared: shared!, experts: collected.artifacts, optOut: list(flags['opt-out']), routerRows: rows })
    try {
      const manifest = await exportModel(moe, out, {
        metrics,
        ...(round !== undefined ? { round } : {}),
        signatures: new Map(collected.artifacts.map(a => [a.hash, a.signature]))
      }, { clock: systemClock })
      for (const r of collected.rejected) process.stderr.write(`forgemesh: left out ${r.source}: ${r.error}: ${r.message}\n`)
      const experts = manifest.experts.map(e => ({ slot: e.slot, id: e.id, owner: e.owner, artifact: e.artifact }))
      if (flags.json === true) {
        process.stdout.write(JSON.stringify({ ok: true, out, specHash: manifest.specHash, weights: manifest.weights, experts, masked: manifest.masked, rejected: collected.rejected }) + '\n')
      } else {
        process.stdout.write(`exported ${experts.length} expert(s) (${experts.map(e => e.id).join(', ') || 'none'}) to ${out}: model.safetensors (sha256 ${manifest.weights.sha256.slice(0, 16)}…) and manifest.json\n`)
      }
    } finally {
      moe.dispose()
    }
  } finally {
    await store?.close()
  }
  return 0
}
