# syntax=docker/dockerfile:1
# postaged in a container. Its ENTRYPOINT is postaged itself, so the daemon is PID 1 and a
# `restart` re-execs PID 1 in place: the container lives on, with new plugin code.
#
#   docker build -t postaged .
#   docker run --rm -e POSTAGE_URL=amqp://guest:guest@rabbit:5672/%2F -e POSTAGE_HOSTNAME=box1 \
#     -v "$PWD/plugins:/etc/postaged/plugins:ro" postaged
#
# Node 20 execs through the native @jcoreio/kexec (built in the first stage); with a Node
# >= 22.15 base image postaged uses process.execve instead and kexec is not needed.
# HEALTHCHECK needs the Docker image format: `podman build --format docker` (OCI drops it).
# docs/operations.md: volumes, compose, health, restarts.

ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
# node-gyp's toolchain, for @jcoreio/kexec.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY lib lib
COPY daemon daemon
COPY cli cli
# Then only what runs: production dependencies, without the native addons' build
# intermediates and headers (nan and node-addon-api compile them; bindings loads them).
RUN npx tsc -p tsconfig.json \
 && npm prune --omit=dev --no-audit --no-fund \
 && rm -rf node_modules/nan node_modules/node-addon-api node_modules/*/build/Release/obj.target node_modules/@*/*/build/Release/obj.target \
      node_modules/*/build/Release/.deps node_modules/@*/*/build/Release/.deps dist/bench

FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    POSTAGED_CONFIG=/etc/postaged/postaged.jsonc \
    POSTAGED_LOG_FORMAT=json
WORKDIR /opt/postage
COPY --from=build /src/node_modules node_modules
COPY --from=build /src/dist dist
COPY package.json ./
COPY bin bin
# The example plugins as defaults; mount your own folder over /etc/postaged/plugins.
COPY plugins /etc/postaged/plugins
COPY config/container.jsonc /etc/postaged/postaged.jsonc
# The image's unprivileged user (uid 1000); it reads the plugins, it cannot change them.
USER node
STOPSIGNAL SIGTERM
# Metrics (/metrics) and the probes (/healthz, /readyz) on port 9464, on every address of the
# container, for Prometheus and Kubernetes (docs/observability.md). POSTAGED_METRICS_LISTEN= (empty)
# turns the listener off.
ENV POSTAGED_METRICS_LISTEN=0.0.0.0:9464
EXPOSE 9464
# Healthy = ready: with the listener on, /readyz answers 200 (running, connected to the broker,
# every enabled plugin consuming), asked by postaged-probe (the image has no curl); a stopped daemon
# does not answer within 5 s. With the listener off, the daemon must answer a ping through the
# broker instead: the key is N@H, the daemon's own application on this host (POSTAGED_NAME,
# POSTAGE_HOSTNAME, else postaged and the container's host name), so it holds under `--init` too,
# and the broker is the daemon's (the config file's broker section, then the environment). Either
# way a lost broker connection, or a daemon that stopped consuming, is unhealthy within 3 tries.
HEALTHCHECK --interval=30s --timeout=15s --start-period=60s --retries=3 \
  CMD if [ -n "$POSTAGED_METRICS_LISTEN" ]; then /opt/postage/bin/postaged-probe >/dev/null; \
      else /opt/postage/bin/postage ping "${POSTAGED_NAME:-postaged}@${POSTAGE_HOSTNAME:-$(hostname)}" --config "$POSTAGED_CONFIG" --expect 1 --timeout 5 >/dev/null; fi || exit 1
ENTRYPOINT ["/opt/postage/bin/postaged"]
