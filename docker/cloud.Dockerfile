# fleetd cloud node. Build from the repository root:
#   docker build -f docker/cloud.Dockerfile -t fleetd-cloud .
# See docker/README.md for running it.

# --- build: the project's own scripts, as on a fresh Debian 12 -------------
FROM debian:12 AS build
WORKDIR /src
# Dependencies first, in their own layer: rebuilt only when the list changes.
COPY tools/install-deps tools/install-deps
RUN bash tools/install-deps
COPY CMakeLists.txt ./
COPY cmake cmake
COPY messages messages
COPY runtime runtime
COPY actors actors
COPY edge edge
COPY cloud cloud
COPY tools tools
COPY tests tests
COPY config config
RUN bash tools/build fleetd-cloud fleetctl \
 && mkdir /out \
 && strip --strip-debug -o /out/fleetd-cloud build/fleetd-cloud \
 && strip --strip-debug -o /out/fleetctl build/fleetctl

# --- runtime: the shared libraries only ------------------------------------
FROM debian:12-slim
# libcaf-core0.17, libcaf-io0.17, libprotobuf32, libzstd1, libxxhash0 and
# libsqlite3-0 are what the binaries link today; libpq5 and libssl3 are for
# the PostgreSQL store and TLS (docs/architecture.md section 7).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libcaf-core0.17 libcaf-io0.17 libprotobuf32 libzstd1 libxxhash0 \
      libsqlite3-0 libpq5 libssl3 \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --system --user-group --no-create-home \
      --home-dir /var/lib/fleetd-cloud --shell /usr/sbin/nologin fleetd \
 && install -d -o fleetd -g fleetd -m 0750 /var/lib/fleetd-cloud
COPY --from=build /out/fleetd-cloud /out/fleetctl /usr/local/bin/
# cloud.ini sets ingest.host = "0.0.0.0", so published ports reach it.
COPY config/cloud.ini /etc/fleetd/cloud.ini
# Fail the build if a shared library is missing.
RUN ! ldd /usr/local/bin/fleetd-cloud /usr/local/bin/fleetctl | grep 'not found'

USER fleetd
# The embedded SQLite store (cloud.db) and state files.
VOLUME /var/lib/fleetd-cloud
# 7480: device-facing ingest endpoint (HTTP POST /v1/sync, GET /healthz).
# 7401: console (fleetctl over CAF BASP); it listens on 127.0.0.1 only, so
# use it from inside the container: docker exec <container> fleetctl ...
EXPOSE 7480 7401
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s \
  CMD ["/usr/local/bin/fleetctl", "--node", "127.0.0.1:7401", "--timeout", "5s", "status"]
# Any further arguments are options, e.g. --node.id=cloud-2
ENTRYPOINT ["/usr/local/bin/fleetd-cloud", "--config", "/etc/fleetd/cloud.ini"]
