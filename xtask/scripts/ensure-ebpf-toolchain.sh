#!/usr/bin/env bash
# Installs what the eBPF build needs and a fresh machine lacks: the nightly's rust-src (for
# -Z build-std=core) and a bpf-linker linked against the nightly's own LLVM. Debian ships no LLVM
# matching rustc's, and bpf-linker's default feature links a system LLVM, so we point it at the
# libLLVM that rustup already installed with the nightly. Idempotent: a working setup costs ~1 s.
set -euo pipefail

NIGHTLY="${NODETEL_NIGHTLY:-nightly}"
CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
say() { printf 'ensure-ebpf-toolchain: %s\n' "$*" >&2; }

if ! rustup toolchain list | grep -q "^${NIGHTLY}"; then
  say "installing Rust toolchain '${NIGHTLY}' (the eBPF crate needs -Z build-std)"
  rustup toolchain install "${NIGHTLY}" --profile minimal
fi

if ! rustup component list --toolchain "${NIGHTLY}" --installed | grep -q '^rust-src'; then
  say "adding rust-src to ${NIGHTLY}"
  rustup component add rust-src --toolchain "${NIGHTLY}"
fi

if command -v bpf-linker >/dev/null 2>&1 && bpf-linker --version >/dev/null 2>&1; then
  say "bpf-linker present: $(bpf-linker --version)"
  exit 0
fi

SYSROOT=$(rustc +"${NIGHTLY}" --print sysroot)
LLVM_MAJOR=$(rustc +"${NIGHTLY}" -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
if [ -z "${LLVM_MAJOR}" ]; then
  say "cannot tell the LLVM version of ${NIGHTLY} (rustc -vV printed none)"; exit 1
fi
LIB=$(find "${SYSROOT}/lib" -maxdepth 1 -name 'libLLVM.so*' -o -maxdepth 1 -name 'libLLVM-*.so' | head -n 1)
if [ -z "${LIB}" ]; then
  say "no libLLVM in ${SYSROOT}/lib: add the llvm-tools or reinstall ${NIGHTLY}"; exit 1
fi
# bpf-linker keeps a RUNPATH to this prefix, so it must stay where it is.
PREFIX="${CARGO_HOME}/bpf-linker-llvm-${LLVM_MAJOR}"
mkdir -p "${PREFIX}/lib"
ln -sf "${LIB}" "${PREFIX}/lib/libLLVM.so"
ln -sf "${LIB}" "${PREFIX}/lib/$(basename "${LIB}")"
say "building bpf-linker against ${LIB} (LLVM ${LLVM_MAJOR}); about a minute on 2 cores"
LLVM_PREFIX="${PREFIX}" cargo install --locked bpf-linker --no-default-features --features "llvm-${LLVM_MAJOR}"
bpf-linker --version
