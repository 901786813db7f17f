# syntax=docker/dockerfile:1
# The production image: both binaries (orders-api, orders-worker) on a distroless
# base, non-root, no shell, no build tools and no sources. Migrations are compiled
# into orders-api (`orders-api migrate`) and also shipped in /app/migrations.
#
#   docker build -t orders .
#   docker run --rm -e DATABASE_URL=... orders orders-api migrate
#
# Builds offline from the database: queries are checked at run time, not compile time.

ARG RUST_VERSION=1.95

# --- dependency recipe and cache (cargo-chef): rebuilt only when Cargo.toml/lock change
FROM rust:${RUST_VERSION}-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
# Line tables make panics and profiles readable but are most of the binary's size:
# they go to a separate file (the debug-symbols stage below), and the image gets the
# binaries without them, each naming its debug file (.gnu_debuglink) for symbolising.
RUN cargo build --release --locked --bin orders-api --bin orders-worker \
    && mkdir -p /out /debug \
    && for bin in orders-api orders-worker; do \
         objcopy --only-keep-debug "target/release/$bin" "/debug/$bin.debug" \
         && objcopy --strip-debug --add-gnu-debuglink="/debug/$bin.debug" "target/release/$bin" "/out/$bin"; \
       done

# --- the split debug info, kept out of the image:
#   docker build --target debug-symbols --output type=local,dest=symbols .
FROM scratch AS debug-symbols
COPY --from=builder /debug/ /

# --- runtime: glibc, libgcc and CA certificates only; user 65532 (nonroot)
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
WORKDIR /app
COPY --from=builder /out/orders-api /out/orders-worker /usr/local/bin/
COPY migrations /app/migrations
USER 65532:65532
ENV ORDERS_HTTP_ADDR=0.0.0.0:8080 \
    ORDERS_METRICS_ADDR=0.0.0.0:9463 \
    ORDERS_WORKER_HEALTH_ADDR=0.0.0.0:8081 \
    ORDERS_WORKER_METRICS_ADDR=0.0.0.0:9464 \
    ORDERS_LOG_FORMAT=json
EXPOSE 8080 8081 9463 9464
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["orders-api", "probe", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT []
CMD ["orders-api", "serve"]
