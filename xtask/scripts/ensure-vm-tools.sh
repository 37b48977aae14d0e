#!/usr/bin/env bash
# What `cargo xtask integration-test vm` needs on the host: QEMU (software emulation is enough),
# a static busybox to be the guest's userland, cpio to pack the initramfs, and apt to fetch
# Debian's kernel. Installs the missing ones with apt when run as root; otherwise says what to run.
set -euo pipefail

need=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
command -v cpio >/dev/null 2>&1 || need+=(cpio)
# busybox-static, not busybox: the guest has no libc of its own for a dynamic one to use.
[ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 || need+=(busybox-static)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "vm: missing ${need[*]}; install them with: apt-get install ${need[*]}" >&2
  exit 1
fi
echo "vm: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}
