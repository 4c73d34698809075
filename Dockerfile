# tollbooth: build with the Rust toolchain, run on a slim Debian as a non-root user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
RUN cargo build --release --locked --bin tollbooth

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
    TOLLBOOTH_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["tollbooth"]
CMD ["serve"]
