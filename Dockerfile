# tollbooth: built with the Rust toolchain, run on a slim Debian as a non-root user.
#   docker build -t tollbooth .
#   docker run --env-file tollbooth.env -p 8080:8080 -v tollbooth-data:/data tollbooth
FROM rust:1.95-bookworm AS build
WORKDIR /src
# The same profile for both builds below, so the dependencies built first are reused: no debug
# lines, symbols stripped (about 34 MB instead of 218 MB).
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=symbols
# Dependencies first, in a layer of their own, from the manifest alone: a change to tollbooth's
# sources rebuilds tollbooth only. Placeholders stand in for every target the manifest names.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && for bench in $(sed -n '/^\[\[bench\]\]/{n;s/^name = "\(.*\)"$/\1/p}' Cargo.toml); do \
        echo 'fn main() {}' > "benches/$bench.rs"; \
    done \
 && cargo build --release --locked --bin tollbooth \
 && rm -rf src benches
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
# Newer than the placeholders' build, so cargo builds tollbooth itself again.
RUN touch src/main.rs src/lib.rs build.rs \
 && cargo build --release --locked --bin tollbooth

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin tollbooth \
 && mkdir -p /data && chown tollbooth /data
COPY --from=build /src/target/release/tollbooth /usr/local/bin/tollbooth
USER tollbooth
WORKDIR /data
VOLUME ["/data"]
ENV TOLLBOOTH_DATABASE_URL=sqlite:///data/tollbooth.db \
    TOLLBOOTH_LISTEN=0.0.0.0:8080 \
    TOLLBOOTH_LOG_FORMAT=json
EXPOSE 8080
# `tollbooth health` asks this container's own tollbooth for /readyz (database reachable).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["tollbooth", "health", "--timeout", "4s"]
ENTRYPOINT ["tollbooth"]
CMD ["serve"]
