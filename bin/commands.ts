/**
 * The command registry. Each entry loads its module lazily, so `forgemesh
 * --help` does not pay for tfjs or libp2p.
 */
export interface CommandModule {
  run: (argv: string[]) => Promise<number>
}

export interface CommandEntry {
  summary: string
  load: () => Promise<CommandModule>
}

export const COMMANDS: Record<string, CommandEntry> = {
  sim: { summary: 'run a federation topology on this machine: real sites on a shaped mesh, baselines beside them, report.json + report.html', load: async () => await import('./commands/sim.ts') },
  data: { summary: 'check a table against the suitability gate; write DP synthetic data for it', load: async () => await import('./commands/data.ts') },
  privacy: { summary: 'compute eps for a DP plan; show a site\'s privacy budget', load: async () => await import('./commands/privacy.ts') },
  init: { summary: 'create a site: its key, a federation key (new or imported) and a config template', load: async () => await import('./commands/init.ts') },
  node: { summary: 'run a site until it is stopped (node start --config FILE)', load: async () => await import('./commands/node.ts') },
  status: { summary: 'show a running node: peers, round, coordinator, experts, backend, eps', load: async () => await import('./commands/status.ts') },
  audit: { summary: 'verify a site\'s hash-chained audit log; list its records', load: async () => await import('./commands/audit.ts') },
  export: { summary: 'assemble the shared MoE from a site\'s verified experts and write safetensors + manifest.json', load: async () => await import('./commands/export.ts') },
  serve: { summary: 'serve an exported MoE over HTTP: POST /v1/predict with expert attribution and exclude', load: async () => await import('./commands/serve.ts') },
}
