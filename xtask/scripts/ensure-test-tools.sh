#!/usr/bin/env bash
# Every tool `cargo xtask test` (and CI) needs, in one list: installed with apt when run as root
# on Debian, otherwise named in one line. `.ci/run` and `cargo xtask test` both call this.
set -euo pipefail

need=()
want() { # want <command or test> <package>
  case "$1" in
    /*) [ -e "$1" ] || need+=("$2") ;;
    py:*) python3 -c "${1#py:}" >/dev/null 2>&1 || need+=("$2") ;;
    *) command -v "$1" >/dev/null 2>&1 || need+=("$2") ;;
  esac
}
want promtool prometheus            # metric and rule checks, the deploy check
want bpftool bpftool                # programs gone after SIGTERM
want ip iproute2                    # network-namespace test
want taskset util-linux             # pinned CPU burners
want setpriv util-linux             # the capability test's exact capability sets
want kill procps                    # signals to the agent
want protoc protobuf-compiler       # containerd-client compiles containerd's .proto files
want objcopy binutils               # the VM suite strips what it packs
want dockerd docker.io              # identity, API and image tests: dockerd, containerd, ctr
want /bin/busybox busybox-static    # the image of those tests, and the VM's userland
want c++ g++                        # libfuzzer-sys compiles libFuzzer (cargo xtask fuzz)
want cc gcc                         # tikv-jemalloc-sys builds jemalloc from C (the agent's allocator)
want make make                      # ... with its own configure and make
want curl curl                      # TLS and basic-auth tests: a real client; the build fetches uPlot
want openssl openssl                # ... and the certificate a TLS port serves
want strace strace                  # the API test watches the agent's file calls
want perf linux-perf                # the benchmark's context-switch test
want docker-compose docker-compose  # the deploy check's Compose files
want influxd influxdb               # push: cAdvisor's InfluxDB schema into a real InfluxDB 1.6
want victoria-metrics victoria-metrics  # push: remote write and line protocol into VictoriaMetrics
want tinyproxy tinyproxy           # push: a node whose only way out is an HTTP proxy
want nsenter util-linux             # ... the agent in that network namespace, /sys left as it is
want nft nftables                   # TCP health: a known loss (nftables drops 5 % of the segments)
want wrk wrk                        # the benchmark's many-connection load (tcp_health programs' cost)
want fio fio                        # the benchmark's block I/O load (blkio programs' cost)
want dmsetup dmsetup                # the VM's block I/O latency test: a dm-delay device
want losetup mount                  # ... over loop devices
want /usr/bin/chromium chromium     # the web UI in a real headless browser
want chromedriver chromium-driver   # ... driven over WebDriver
want 'py:import venv, ensurepip' python3-venv  # the deploy check's PyPI tools

[ ${#need[@]} -eq 0 ] && exit 0
# Several tools can come from one package.
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing test tools; install (Debian): apt-get install ${need[*]}" >&2
  exit 1
fi
echo "installing test tools: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
