# syntax=docker/dockerfile:1
#
# corecast container image.
#
#   docker build -t corecast .                     # builds the binary in a Rust image
#   podman build --format docker -t corecast .     # the same with podman (the docker image
#                                                  # format keeps the HEALTHCHECK; OCI drops it)
#
# Without access to a Rust image, a binary built on the host can be packaged instead (the
# .dockerignore keeps target/*/corecast in the context for this):
#
#   cargo build --release --locked -p corecast
#   docker build --target prebuilt -t corecast .
#   docker build --target prebuilt --build-arg BINARY=target/debug/corecast -t corecast .
#
# A prebuilt binary must have been built against the base image's glibc or an older one
# (Debian bookworm: glibc 2.36).
#
# Both final stages share every line of `runtime-base`: a non-root user (uid 10001), the
# default configuration as /etc/corecast/corecast.toml, CA certificates, the ports, the
# health check and the command line. Run it as docs/OPERATIONS.md ("Containers") says: the
# default seccomp profiles of Docker 25+, containerd 2+ and Podman block io_uring, which
# corecast cannot run without; deploy/container/seccomp-io_uring.json allows it.

ARG RUST_IMAGE=docker.io/library/rust:1-bookworm
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

# ---- The runtime part common to both final stages ----
FROM ${BASE_IMAGE} AS runtime-base
# CA certificates (debian:bookworm-slim has none): installed only when the base lacks them,
# so that a base image that already carries them needs no package download.
RUN set -eu; \
    if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    groupadd --gid 10001 corecast; \
    useradd --uid 10001 --gid corecast --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin --no-log-init corecast
# The compiled-in defaults, as a file to read and to replace (mount another one over it, or
# set single keys with CORECAST_<SECTION>_<KEY> environment variables). Its listeners:
# RTMP 0.0.0.0:1935 and HTTP 0.0.0.0:8080, reachable through published ports; the admin
# listener (/metrics, /api/v1/..., /readyz) on 127.0.0.1:8081, inside the container only,
# where the health check below reaches it. To publish 8081, listen on 0.0.0.0:8081 and set
# a token: CORECAST_ADMIN_LISTEN=0.0.0.0:8081 CORECAST_ADMIN_TOKEN=... (corecast refuses a
# non-loopback admin listener without one).
COPY config/corecast.toml /etc/corecast/corecast.toml
# RTMP, HTTP (HTTP-FLV, HLS), admin.
EXPOSE 1935 8080 8081
# /readyz answers 200 (without the admin token) once every shard is up and listening.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["corecast", "probe", "http://127.0.0.1:8081/readyz"]
# SIGTERM (docker stop) drains: listeners close, streams end, connections get
# server.drain_timeout_ms (5 s) to finish. Give `docker stop` a longer timeout than that.
STOPSIGNAL SIGTERM
USER 10001:10001
WORKDIR /
ENTRYPOINT ["corecast"]
CMD ["--config", "/etc/corecast/corecast.toml"]

# ---- Final stage for a binary built outside the image (`--target prebuilt`) ----
# Placed before the build stage, so that a builder without stage pruning never needs the
# Rust image for it.
FROM runtime-base AS prebuilt
ARG BINARY=target/release/corecast
COPY ${BINARY} /usr/local/bin/corecast

# ---- Build stage ----
FROM ${RUST_IMAGE} AS build
WORKDIR /src
# The workspace: its members' manifests and sources are all needed to resolve it (fuzz/ is
# a workspace of its own and not needed). A new member or top-level build input needs a line
# here and in .dockerignore.
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY config config
COPY benches benches
COPY testkit testkit
COPY loadtest loadtest
RUN cargo build --release --locked -p corecast \
    && install -D -m 0755 target/release/corecast /out/corecast

# ---- Default final stage: the binary built above ----
FROM runtime-base AS runtime
COPY --from=build /out/corecast /usr/local/bin/corecast
