#!/usr/bin/env bash
# Runs .ci/run N times, each from a fresh clone of this repository's HEAD, and prints each
# run's closing line ("tests: N passed, N failed"), its exit status and its duration.
#
#   scripts/ci-repeat.sh [N] [--hog K]
#
# --hog K keeps K busy processes (one core each) running beside every run, to find timing
# races that only a loaded machine shows. Logs are kept in $CI_REPEAT_DIR (default
# /tmp/postage-ci-repeat). Exits 0 only if every run passed.
set -uo pipefail
runs=5
hogs=0
while [ $# -gt 0 ]; do
  case "$1" in
    --hog) hogs="${2:?--hog needs a count}"; shift 2 ;;
    --hog=*) hogs="${1#--hog=}"; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) runs="$1"; shift ;;
  esac
done
src="$(cd "$(dirname "$0")/.." && pwd)"
out="${CI_REPEAT_DIR:-/tmp/postage-ci-repeat}"
mkdir -p "$out"
hog_pids=()
stop_hogs() { for p in "${hog_pids[@]}"; do kill "$p" 2>/dev/null; done; hog_pids=(); }
trap stop_hogs EXIT
failed=0
for i in $(seq 1 "$runs"); do
  clone="$out/clone-$i"
  rm -rf "$clone"
  git clone -q "$src" "$clone"
  for _ in $(seq 1 "$hogs"); do (exec yes >/dev/null) & hog_pids+=($!); done
  start=$(date +%s)
  (cd "$clone" && CI=true bash .ci/run </dev/null >"$out/run-$i.log" 2>&1)
  status=$?
  stop_hogs
  last=$(tail -n 1 "$out/run-$i.log")
  echo "run $i/$runs: $last (exit $status, $(( $(date +%s) - start )) s, hogs $hogs, log $out/run-$i.log)"
  [ "$status" -eq 0 ] || failed=$((failed + 1))
done
echo "ci-repeat: $((runs - failed)) of $runs runs passed"
[ "$failed" -eq 0 ]
