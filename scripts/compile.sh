#!/usr/bin/env bash
# Builds ./tinyfw, one executable: `deno compile` of main.ts with the XDP object
# (imported `with { type: "bytes" }`) and every other static import embedded.
#
#   deno task compile                                   # or: bash scripts/compile.sh
#   DENORT_BIN=/path/to/denort deno task compile       # offline
#
# Permissions are baked in as --allow-all: tinyfw loads libbpf and libc through
# FFI (--allow-ffi), and FFI code can do anything the process can, so narrower
# --allow-* flags would only look safer. Run it as root, like any XDP loader.
#
# deno compile needs the `denort` base binary of the same Deno version. Deno
# downloads it (denort-<arch>-unknown-linux-gnu.zip of the release), or takes
# it from DENORT_BIN. Where neither works this script says so and exits 1; the
# same code still runs with `deno task start`.
set -euo pipefail
cd "$(dirname "$0")/.."

out=tinyfw
deno_version=$(deno --version | awk 'NR == 1 { print $2 }')
denort_zip="denort-$(uname -m)-unknown-linux-gnu.zip"
how="download $denort_zip of Deno $deno_version where the network allows, unzip it, and set DENORT_BIN=/path/to/denort"

if [ -n "${DENORT_BIN:-}" ]; then
  if [ ! -f "$DENORT_BIN" ]; then
    echo "compile: DENORT_BIN is set to '$DENORT_BIN', which does not exist; point it at the denort binary from $denort_zip of Deno $deno_version, or unset it." >&2
    exit 1
  fi
  if [ "$(readlink -f "$DENORT_BIN")" = "$(readlink -f "$(command -v deno)")" ]; then
    echo "compile: DENORT_BIN points at the deno CLI itself, not at denort; $how." >&2
    exit 1
  fi
fi

bash scripts/build-bpf.sh

log=$(mktemp /tmp/tinyfw-compile.XXXXXX.log)
trap 'rm -f "$log"' EXIT
if ! NO_COLOR=1 deno compile --allow-all --v8-flags=--max-semi-space-size=1 --output "$out" main.ts >"$log" 2>&1; then
  if grep -qE "denort|base binary|dl\.deno\.land" "$log"; then
    echo "compile: the denort base binary for Deno $deno_version could not be had (deno compile downloads it from dl.deno.land or takes DENORT_BIN); $how." >&2
  else
    cat "$log" >&2
    echo "compile: deno compile failed (output above)." >&2
  fi
  exit 1
fi
cat "$log"

# The executable must be tinyfw, not a bare Deno runtime (a wrong DENORT_BIN).
if ! version=$("./$out" --version 2>&1) || [[ $version != tinyfw\ * ]]; then
  echo "compile: ./$out was built but '--version' printed '${version%%$'\n'*}' instead of 'tinyfw <version>'; check that DENORT_BIN is denort $deno_version." >&2
  exit 1
fi
echo "compile: built ./$out ($version, $(du -h "$out" | cut -f1))"
