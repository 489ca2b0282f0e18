# fleetd device node. Build from the repository root:
#   docker build -f docker/edge.Dockerfile -t fleetd-edge .
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
RUN bash tools/build fleetd fleetctl \
 && mkdir /out \
 && strip --strip-debug -o /out/fleetd build/fleetd \
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
RUN useradd --system --user-group --no-create-home --home-dir /var/lib/fleetd \
      --shell /usr/sbin/nologin fleetd \
 && install -d -o fleetd -g fleetd -m 0750 /var/lib/fleetd
COPY --from=build /out/fleetd /out/fleetctl /usr/local/bin/
COPY config/edge.ini /etc/fleetd/edge.ini
# Fail the build if a shared library is missing.
RUN ! ldd /usr/local/bin/fleetd /usr/local/bin/fleetctl | grep 'not found'

USER fleetd
# The device's SQLite store (fleetd.db) and state files: keep them across
# restarts, or unsynced data is lost with the container.
VOLUME /var/lib/fleetd
# Console (fleetctl over CAF BASP). It listens on 127.0.0.1 only, so use it
# from inside the container: docker exec <container> fleetctl status
EXPOSE 7400
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s \
  CMD ["/usr/local/bin/fleetctl", "--node", "127.0.0.1:7400", "--timeout", "5s", "status"]
# Any further arguments are options: --cloud.host=... --device.id=...
ENTRYPOINT ["/usr/local/bin/fleetd", "--config", "/etc/fleetd/edge.ini"]
