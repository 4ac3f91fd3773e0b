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
  data: { summary: 'check a table against the suitability gate; write DP synthetic data for it', load: async () => await import('./commands/data.ts') },
  privacy: { summary: 'compute eps for a DP plan; show a site\'s privacy budget', load: async () => await import('./commands/privacy.ts') },
}
