#!/usr/bin/env bash
# The README's test command (`npm test`): make sure a broker answers, build, run the main
# suite (ava.config.mjs), then the tests that must run alone (ava.serial.config.mjs).
# Both always run; the exit status is non-zero if either failed. Arguments (files, --match)
# go to the main suite only, and skip the serial one.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-broker.sh || exit 69
npm run build || exit 1
status=0
npx ava "$@" || status=1
if [ $# -eq 0 ] && [ -n "$(find test -name '*.serial.test.ts' -print -quit)" ]; then
  npx ava --config ava.serial.config.mjs || status=1
fi
exit $status
