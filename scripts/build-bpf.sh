#!/usr/bin/env bash
# Builds the XDP program (bpf/tinyfw.bpf.o, embedded into tinyfw) and the empty
# XDP program the benchmark subtracts (bpf/bench_empty.bpf.o).
# bpf/tinyfw.h is regenerated from lib/abi/layout.ts first.
#
# Cheap when nothing changed: the hashes of the inputs and the compiler's
# version are kept in bpf/.build-stamp, and a build whose inputs match it and
# whose objects exist does nothing and prints nothing (otherwise one line,
# on stderr). `deno task start`,
# `check` and `test` run it first, so a fresh clone or an edited source is
# built before use.
#
#   bash scripts/build-bpf.sh           # build if needed
#   bash scripts/build-bpf.sh --force   # build anyway
set -euo pipefail
cd "$(dirname "$0")/.."

objects=(bpf/tinyfw.bpf.o bpf/bench_empty.bpf.o)
inputs=(bpf/tinyfw.bpf.c bpf/bench_empty.bpf.c lib/abi/layout.ts lib/abi/header.ts scripts/gen-header.ts
  scripts/build-bpf.sh)
stamp_file=bpf/.build-stamp

if ! command -v clang >/dev/null || ! command -v llvm-strip >/dev/null; then
  echo "build-bpf: clang and llvm-strip are needed to build the XDP program; run 'bash scripts/setup.sh' as root first." >&2
  exit 1
fi

stamp() { { sha256sum "${inputs[@]}"; clang --version | head -n 1; } | sha256sum | cut -d' ' -f1; }

if [ "${1:-}" != --force ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$(stamp)" ]; then
  fresh=1
  for o in "${objects[@]}"; do [ -f "$o" ] || fresh=0; done
  [ "$fresh" = 1 ] && exit 0
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
stamp >"$stamp_file"
echo "build-bpf: built ${objects[*]}" >&2
