#!/usr/bin/env node
// The `forgemesh` command. Sources are TypeScript, run through tsx's loader
// (a runtime dependency, so a fresh `npm ci` needs no build step).
import { register } from 'tsx/esm/api'

register()
await import('./cli.ts')
