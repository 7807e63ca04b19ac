#!/usr/bin/env bash
# Installs everything tinyfw needs to build, test and run on Debian 12, as root:
# Debian packages, Deno (pinned, from npm), the npm packages tinyfw imports
# (into Deno's cache, so that the agent's first start downloads nothing), the
# XDP object (bpf/tinyfw.bpf.o), a mounted bpffs, and Prometheus' binaries for
# the metrics tests (unpacked from Debian's package, not installed: no
# Prometheus service is started).
#
# Idempotent: a second run installs nothing and prints nothing. It prints one
# line for each thing it does, and one sentence when something is wrong.
#
#   bash scripts/setup.sh
set -euo pipefail

DENO_VERSION=2.9.6

# Debian 12 packages, and what needs them.
PACKAGES=(
  clang llvm            # build bpf/*.bpf.c (clang -target bpf, llvm-strip)
  libbpf-dev            # <bpf/bpf_helpers.h> and friends for the XDP program
  libbpf1               # libbpf.so.1, loaded by Deno FFI (lib/ffi/libbpf/)
  linux-libc-dev        # <linux/bpf.h>, <linux/if_ether.h>, ...
  gcc-multilib          # /usr/include/asm -> x86_64-linux-gnu/asm: <asm/types.h> for a
                        # plain `clang -target bpf` (build-bpf.sh also passes -I for it)
  bpftool               # inspect programs and maps; `bpftool net show`
  iproute2              # ip netns/link/veth in the e2e tests
  util-linux            # nsenter (ip netns exec remounts /sys, hiding bpffs)
  procps                # pgrep/ps in tests
  xdp-tools             # xdp-filter, the data-plane peer benchmarks compare against
  nftables              # the netdev-ingress drop baseline in benchmarks
  netsniff-ng           # trafgen, the packet generator
  iperf3                # throughput through a filtered container
  ethtool               # offload settings on veth pairs in benchmarks
  iputils-ping          # ping between test namespaces
  netcat-openbsd        # ad-hoc TCP/UDP peers
  containerd runc       # --cmode tests run a private containerd
  busybox-static        # a container root filesystem for those tests
  containernetworking-plugins # the CNI bridge plugin, invoked as CRI would
)

say() { echo "setup: $*"; }
die() {
  echo "setup: $*" >&2
  exit 1
}

if [ "$(id -u)" -ne 0 ]; then
  die "this script installs packages and mounts bpffs, so it must run as root; run it again with sudo (sudo bash scripts/setup.sh)."
fi
if ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
  die "apt-get and dpkg were not found; this script supports Debian 12 (bookworm) only, so install the packages it lists by hand on other systems."
fi

# --- Debian packages -------------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  log=$(mktemp /tmp/tinyfw-setup-apt.XXXXXX.log)
  export DEBIAN_FRONTEND=noninteractive
  apt_opts=(-y -q -o DPkg::Lock::Timeout=300 --no-install-recommends)
  if ! apt-get update -q >"$log" 2>&1; then
    say "warning: apt-get update failed (see $log); trying the install anyway"
  fi
  if ! apt-get install "${apt_opts[@]}" "${missing[@]}" >>"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "apt-get install failed (full log: $log); fix the package sources or the network, then run this script again."
  fi
  rm -f "$log"
fi

# --- Prometheus and promtool, for the metrics tests ---------------------------
# Installing Debian's `prometheus` package would start a Prometheus server on
# :9090; the tests only need its two static binaries, so the package is
# downloaded and unpacked into TOOLS_DIR (tests/helpers/prometheus.ts looks there).
TOOLS_DIR=/usr/local/lib/tinyfw-test-tools
if [ ! -x "$TOOLS_DIR/prometheus" ] || [ ! -x "$TOOLS_DIR/promtool" ]; then
  say "unpacking prometheus and promtool (Debian's package) into $TOOLS_DIR"
  tmp=$(mktemp -d /tmp/tinyfw-setup-prometheus.XXXXXX)
  log="$tmp/apt.log"
  # apt downloads as the _apt user where it can write.
  chown _apt "$tmp" 2>/dev/null || true
  if ! (cd "$tmp" && apt-get download -q prometheus) >"$log" 2>&1; then
    apt-get update -q >>"$log" 2>&1 || true
    if ! (cd "$tmp" && apt-get download -q prometheus) >>"$log" 2>&1; then
      tail -n 30 "$log" >&2
      die "apt-get download prometheus failed (log: $log); fix the package sources or the network, then run this script again."
    fi
  fi
  if ! dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root" >>"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "unpacking the prometheus package failed (log: $log); run this script again."
  fi
  mkdir -p "$TOOLS_DIR"
  install -m 0755 "$tmp/root/usr/bin/prometheus" "$tmp/root/usr/bin/promtool" "$TOOLS_DIR/"
  rm -rf "$tmp"
fi

# --- Deno, pinned, from npm --------------------------------------------------
deno_version() { "$1" --version 2>/dev/null | awk 'NR == 1 { print $2 }'; }

if ! command -v npm >/dev/null; then
  die "npm was not found; install Node.js and npm (apt-get install nodejs npm), then run this script again."
fi
npm_bin="$(npm prefix -g)/bin"
deno_bin=$(command -v deno || true)
if [ -z "$deno_bin" ] && [ -x "$npm_bin/deno" ]; then deno_bin="$npm_bin/deno"; fi

if [ -z "$deno_bin" ] || [ "$(deno_version "$deno_bin")" != "$DENO_VERSION" ]; then
  say "installing Deno $DENO_VERSION from npm (npm install -g deno@$DENO_VERSION)"
  log=$(mktemp /tmp/tinyfw-setup-npm.XXXXXX.log)
  if ! npm install -g --no-audit --no-fund --loglevel=error "deno@$DENO_VERSION" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "npm install -g deno@$DENO_VERSION failed (full log: $log); check that the npm registry is reachable, then run this script again."
  fi
  rm -f "$log"
  if [ "$(deno_version "$npm_bin/deno")" != "$DENO_VERSION" ]; then
    die "npm installed Deno but '$npm_bin/deno --version' does not print $DENO_VERSION; remove $npm_bin/deno and run this script again."
  fi
  on_path=$(command -v deno || true)
  if [ -n "$on_path" ] && [ "$(deno_version "$on_path")" != "$DENO_VERSION" ]; then
    die "another Deno at $on_path (not $DENO_VERSION) comes first in PATH; remove it or put $npm_bin first in PATH."
  fi
  if [ -z "$on_path" ]; then
    say "note: $npm_bin is not in PATH; add it (export PATH=\"$npm_bin:\$PATH\") to run deno"
  fi
fi

# --- npm packages, into Deno's cache ----------------------------------------
# `deno install` with no argument caches every dependency deno.json names (as
# locked in deno.lock). Its own output (download lines, a notice about an npm
# package's install script that tinyfw does not need) goes to a log.
deno_bin="$(command -v deno || echo "$npm_bin/deno")"
cache_log=$(mktemp /tmp/tinyfw-setup-deno.XXXXXX.log)
if ! (cd "$(dirname "$0")/.." && DENO_NO_UPDATE_CHECK=1 "$deno_bin" install --frozen) >"$cache_log" 2>&1; then
  tail -n 30 "$cache_log" >&2
  die "deno install (caching the npm packages tinyfw imports) failed (full log: $cache_log); check that the npm registry is reachable, then run this script again."
fi
# (deno install fetches some registry metadata every time; tarballs only when missing.)
if grep -aq 'Download.*\.tgz' "$cache_log"; then say "cached the npm packages tinyfw imports"; fi
rm -f "$cache_log"

# --- The XDP object ------------------------------------------------------------
# Built only when missing or when its sources changed (scripts/build-bpf.sh).
if ! PATH="$(dirname "$deno_bin"):$PATH" bash "$(dirname "$0")/build-bpf.sh"; then
  die "building the XDP object failed (the compiler's output is above); fix it and run this script again."
fi

# --- The kernel: BPF and bpffs -----------------------------------------------
if [ ! -e /proc/sys/kernel/unprivileged_bpf_disabled ] && ! bpftool prog list >/dev/null 2>&1; then
  die "this kernel does not offer the bpf() system call (CONFIG_BPF_SYSCALL); tinyfw needs a Linux kernel with BPF and XDP, 5.15 or later."
fi

if [ "$(stat -f -c %T /sys/fs/bpf 2>/dev/null || true)" != bpf_fs ]; then
  if [ -e /sys/fs/bpf ] && mountpoint -q /sys/fs/bpf; then
    die "/sys/fs/bpf is mounted but is not a bpf filesystem; unmount it (umount /sys/fs/bpf) and run this script again."
  fi
  say "mounting bpffs at /sys/fs/bpf"
  mkdir -p /sys/fs/bpf
  if ! mount -t bpf bpf /sys/fs/bpf; then
    die "mounting bpffs at /sys/fs/bpf failed; mount it yourself (mount -t bpf bpf /sys/fs/bpf), e.g. from the host when in a container."
  fi
fi
