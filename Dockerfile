# The `scoutstream` binary in a small runtime image.
#
#   docker build -t scoutstream:0.1.0 .
#   docker run --rm scoutstream:0.1.0 --help
#
# Stages:
#   planner  reduces the source tree to what decides the dependency graph
#            (manifests, Cargo.lock, build scripts) plus empty stand-ins for
#            every crate root, so the next stage's dependency layer is rebuilt
#            only when a manifest or the lock file changes;
#   builder  compiles the dependencies once (cached layer), then the workspace;
#   runtime  debian:bookworm-slim with the binary, CA certificates and the
#            example config, running as an unprivileged numeric user.
#
# rdkafka builds librdkafka from its bundled sources with ./configure and make
# (no cmake-build feature): the rust:1-bookworm image already has gcc, g++,
# make, pkg-config and zlib's headers. Everything the binary reads at run time
# (Avro schemas, the dotaconstants reference data, SQL migrations) is compiled
# in with include_str!/sqlx::migrate!; the shared OpenDota fixtures are only
# for the embedded default and tests and are not part of the image.

FROM rust:1-bookworm AS planner
WORKDIR /src
COPY . .
# Keep Cargo.toml/Cargo.lock/build.rs; replace each crate root with a stub
# (lib.rs empty, binaries and benches an empty main); drop everything else.
RUN set -eu; \
    mkdir -p /skeleton; \
    find . -path ./target -prune -o \( -name Cargo.toml -o -name Cargo.lock -o -name build.rs \) -print \
      | while read -r f; do mkdir -p "/skeleton/$(dirname "$f")"; cp "$f" "/skeleton/$f"; done; \
    find . -path ./target -prune -o -type f -name '*.rs' \
      \( -path '*/src/lib.rs' -o -path '*/src/main.rs' -o -path '*/src/bin/*' \
         -o -path '*/benches/*' -o -path '*/examples/*' \) -print \
      | while read -r f; do \
          mkdir -p "/skeleton/$(dirname "$f")"; \
          case "$f" in */src/lib.rs) : > "/skeleton/$f" ;; *) echo 'fn main() {}' > "/skeleton/$f" ;; esac; \
        done

FROM rust:1-bookworm AS builder
WORKDIR /src
# Debug line tables (profile.release debug = 1) stay out of the image.
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    CARGO_TERM_COLOR=never
COPY --from=planner /skeleton/ ./
# The dependency layer: rebuilt only when a manifest or Cargo.lock changes.
RUN cargo build --release --locked -p scoutstream
COPY . .
# The stubs' artifacts are newer than the sources copied over them: touch the
# sources so cargo rebuilds the workspace crates (dependencies stay cached).
RUN find . -path ./target -prune -o -type f \( -name '*.rs' -o -name '*.sql' \) -exec touch {} + \
    && cargo build --release --locked -p scoutstream \
    && install -D -m 0755 target/release/scoutstream /out/scoutstream

FROM debian:bookworm-slim AS runtime
# ca-certificates for TLS to managed Kafka, Redis and PostgreSQL.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 scoutstream \
    && useradd --system --uid 10001 --gid scoutstream --home-dir /var/lib/scoutstream \
       --create-home --shell /usr/sbin/nologin scoutstream
COPY --from=builder /out/scoutstream /usr/local/bin/scoutstream
# The documented example (Kafka, Redis, PostgreSQL on 127.0.0.1). Pass it with
# `run -c /etc/scoutstream/scoutstream.toml` and override hosts through
# SCOUTSTREAM__SECTION__KEY variables, or mount your own file over it.
COPY deploy/config/scoutstream.toml /etc/scoutstream/scoutstream.toml
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
# `run` without a config uses the embedded defaults (SQLite file in the cwd).
WORKDIR /var/lib/scoutstream
# /metrics, /healthz, /readyz (observe.bind; 0.0.0.0:9464 in the example config).
EXPOSE 9464
# No curl in the slim image: bash's /dev/tcp sends the request. Only `run`
# serves the endpoint; disable the check for one-shot commands (produce, lag).
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9464 && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["scoutstream"]
CMD ["run"]
