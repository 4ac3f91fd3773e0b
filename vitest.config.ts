import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The Node 20 polyfill must be in place before any libp2p module loads.
    setupFiles: ['node/runtime.ts'],
    // Two cores: more workers only add contention for libp2p and tfjs suites.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
