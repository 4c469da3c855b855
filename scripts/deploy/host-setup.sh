#!/usr/bin/env bash
# Host packages the deployment tests need, from Debian's archive (root; idempotent):
# podman (with buildah, conmon, netavark), runc (see containers.conf for why not crun),
# debootstrap (the local node base image: no container registry is reachable here).
set -euo pipefail
need=()
for p in podman runc debootstrap; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  echo "host-setup: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
podman --version
