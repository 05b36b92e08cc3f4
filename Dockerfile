# One image with both binaries: `commlab-operator` (the controller) and
# `commlab` (orders, catalog and the experiment runner).
# Built by e2e/run.sh kind (needs Docker); this machine has no Docker engine.
# e2e/images/build.sh makes the same image without Docker: the layout both
# share (paths, user, entrypoint, libraries, CA bundle) is documented in
# e2e/images/README.md; change them together.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p commlab-controller -p commlab-workload \
 && cp target/release/commlab-operator target/release/commlab /usr/local/bin/

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/commlab-operator /usr/local/bin/commlab /usr/local/bin/
USER 65532:65532
WORKDIR /home/nonroot
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
ENTRYPOINT ["commlab-operator"]
CMD ["run"]
