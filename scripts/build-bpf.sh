#!/usr/bin/env bash
# Builds the XDP program (bpf/tinyfw.bpf.o, embedded into tinyfw) and the empty
# XDP program the benchmark subtracts (bpf/bench_empty.bpf.o).
# bpf/tinyfw.h is regenerated from lib/datapath/layout.ts first.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v clang >/dev/null; then
  echo "build-bpf: clang is not installed; run 'bash scripts/setup.sh' as root first." >&2
  exit 1
fi

deno run --quiet --allow-write=bpf scripts/gen-header.ts

arch_include="/usr/include/$(uname -m)-linux-gnu"
cflags=(-O2 -g -Wall -Werror -target bpf -mcpu=v3 -I bpf -I "$arch_include")

build() {
  local src=$1 out=$2
  clang "${cflags[@]}" -c "$src" -o "$out.tmp"
  # Keep BTF (libbpf needs it), drop DWARF: a smaller object to embed.
  llvm-strip -g "$out.tmp"
  mv "$out.tmp" "$out"
}

build bpf/tinyfw.bpf.c bpf/tinyfw.bpf.o
build bpf/bench_empty.bpf.c bpf/bench_empty.bpf.o
