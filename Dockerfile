# nodetel's container image, multi-stage. The base images are build arguments, so the image can
# be built where no registry is reachable (see the README, "Container image"):
#
#   docker build -t nodetel:0.1.0 .                                   # from source, with a registry
#   docker build --build-arg BUILD_IMAGE=... --build-arg RUNTIME_IMAGE=... -t nodetel:0.1.0 .
#   docker build --build-arg BINARY_FROM=<image holding /out/nodetel> ...   # a binary built elsewhere
#
# The runtime stage is what ships: the binary and the C runtime it links (glibc, libgcc_s), run
# as root with the capabilities the DaemonSet grants. Nothing else: no shell, no package manager.

# Rust (stable 1.95 or later) on Debian bookworm, with rustup for the nightly the eBPF crate needs.
ARG BUILD_IMAGE=rust:1.95-bookworm
# glibc and libgcc_s, and nothing else it needs.
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12
# The stage (or an image) whose /out/nodetel goes into the runtime image.
ARG BINARY_FROM=build

FROM ${BUILD_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The nightly's rust-src and a bpf-linker built against the nightly's LLVM, then the agent with
# its kernel programs embedded.
RUN cargo xtask setup \
 && cargo build --release --locked -p nodetel \
 && install -D -m 0755 target/release/nodetel /out/nodetel

FROM ${BINARY_FROM} AS binary

FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=binary /out/nodetel /usr/local/bin/nodetel
# Root, with only the capabilities the orchestrator adds (see deploy/): the runtime sockets and
# cgroupfs belong to root.
USER 0:0
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/nodetel"]
