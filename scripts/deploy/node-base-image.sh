#!/usr/bin/env bash
# Makes the Dockerfile's base image (FROM node:20-bookworm-slim) locally, since no container
# registry is reachable here: Debian bookworm minbase (debootstrap, from the Debian archive apt
# already uses) + this host's Node.js 20 (every file of its `nodejs` package) + npm 10.8.2 (the
# npm Node 20.20 bundles; from the npm registry) + a `node` user with uid/gid 1000, as in the
# official image. The project's Dockerfile then builds unchanged.
#
# Cache (outside any clone, so CI runs from fresh clones reuse it): $POSTAGE_CI_CACHE, default
# /var/cache/postage-ci, holds bookworm-minbase.tar (debootstrap, ~60 s to remake) and
# node-base-<node version>.oci.tar (`podman load` takes seconds).
#   usage: node-base-image.sh [Dockerfile]      prints the tag it made or found
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
dockerfile=${1:-$here/../../Dockerfile}
cache=${POSTAGE_CI_CACHE:-/var/cache/postage-ci}
mkdir -p "$cache"

# The FROM name: the default of `ARG NODE_IMAGE=` (a short name means Docker Hub's library).
from=$(sed -n 's/^ARG NODE_IMAGE=\(.*\)$/\1/p' "$dockerfile" | head -1)
[ -n "$from" ] || { echo "node-base-image: no 'ARG NODE_IMAGE=' in $dockerfile" >&2; exit 1; }
case $from in */*/*) tag=$from ;; */*) tag=docker.io/$from ;; *) tag=docker.io/library/$from ;; esac
node_version=$(node -p 'process.versions.node')
case $node_version in 20.*) ;; *) echo "node-base-image: the host's Node is $node_version, the image needs 20.x" >&2; exit 1 ;; esac
archive=$cache/node-base-$node_version.oci.tar

if podman image exists "$tag"; then echo "$tag"; exit 0; fi
if [ -f "$archive" ]; then podman load -q -i "$archive" >/dev/null && podman image exists "$tag" && { echo "$tag"; exit 0; }; fi

# The Debian archive this host's apt uses (deb822 sources, then the classic list).
mirror=$(grep -hE '^URIs: *http' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | awk '{print $2; exit}')
[ -n "$mirror" ] || mirror=$(awk '$1=="deb" && $2 ~ /^http/ && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
mirror=${mirror:-http://deb.debian.org/debian}

work=$(mktemp -d /var/tmp/postage-node-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"
if [ -f "$cache/bookworm-minbase.tar" ]; then
  tar -C "$root" -xf "$cache/bookworm-minbase.tar"
else
  command -v debootstrap >/dev/null || { echo "node-base-image: debootstrap missing (scripts/deploy/host-setup.sh installs it)" >&2; exit 1; }
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  tar -C "$root" -cf "$cache/bookworm-minbase.tar.part" . && mv "$cache/bookworm-minbase.tar.part" "$cache/bookworm-minbase.tar"
fi

# Slim like debian:bookworm-slim: no docs, man pages, locales; apt without recommends.
cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'SLIM'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
SLIM
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
rm -rf "$root"/usr/share/{man,info,locale,lintian}/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
  "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
echo 'APT::Install-Recommends "false";' >"$root/etc/apt/apt.conf.d/docker-no-recommends"

# Node: the host package's files (node, corepack, the C headers that node-gyp needs offline);
# node needs only libc, libstdc++ and libgcc_s, all in minbase.
dpkg -L nodejs | grep -vE '^/usr/share/(doc|man)/|^/usr/lib/node_modules/npm(/|$)' |
  while read -r f; do [ -d "$f" ] || echo "${f#/}"; done >"$work/node.files"
tar -C / --no-recursion -cf - -T "$work/node.files" | tar -C "$root" -xf -
# npm 10.8.2, what Node 20.20 bundles (the host may run a newer npm); its tarball bundles its
# dependencies, so unpacking it is the install.
npm_version=10.8.2
if [ ! -f "$cache/npm-$npm_version.tgz" ]; then
  (cd "$work" && npm pack --silent "npm@$npm_version" >/dev/null && mv "npm-$npm_version.tgz" "$cache/")
fi
mkdir -p "$root/usr/lib/node_modules/npm"
tar -C "$root/usr/lib/node_modules/npm" --strip-components=1 --no-same-owner -xzf "$cache/npm-$npm_version.tgz"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/bin/npx"
# The host's CA bundle: outgoing TLS (the npm registry) may be intercepted by a proxy only the
# host trusts.
mkdir -p "$root/etc/ssl/certs" && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
chroot "$root" groupadd --gid 1000 node
chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
chroot "$root" node --version >/dev/null
chroot "$root" npm --version >/dev/null

# npm_config_nodedir: node-gyp would download Node's headers, which is not possible here.
tar -C "$root" -cf - . | podman import -q \
  --change "ENV NODE_VERSION=$node_version" \
  --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV npm_config_nodedir=/usr' \
  --change 'CMD ["node"]' \
  - "$tag" >/dev/null
podman save -q --format oci-archive -o "$archive.part" "$tag" && mv "$archive.part" "$archive"
echo "$tag"
