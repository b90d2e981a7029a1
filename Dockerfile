# The bridge (and the fakes used to try it without real neighbours) in one small image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --workspace --bins

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/ryze-integrations /src/target/release/fake-chatwoot /src/target/release/ryzeapi-sim /usr/local/bin/
ENV BRIDGE_DATA_DIR=/data BIND=0.0.0.0:8080
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["ryze-integrations"]
