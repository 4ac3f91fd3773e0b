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
}
