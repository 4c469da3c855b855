// The main suite: unit, integration, process, fault and interop tests, four files at a time.
// Files named *.serial.test.ts (they stop the broker, build images, start clusters) run
// alone afterwards, with ava.serial.config.mjs; scripts/test.sh runs both.
export const common = {
  extensions: { ts: 'module' },
  nodeArguments: ['--import=tsx'],
  workerThreads: false,
};

export default {
  ...common,
  files: ['test/**/*.test.ts', '!test/**/*.serial.test.ts'],
  timeout: '60s',
  concurrency: 4,
};
