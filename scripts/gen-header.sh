#!/usr/bin/env bash
# Regenerates include/dragent_tunnel.h with the pinned cbindgen; --verify fails when the
# committed header differs from a fresh generation instead of writing it.
set -euo pipefail
cd "$(dirname "$0")/.."
header=include/dragent_tunnel.h
fresh=$(mktemp)
trap 'rm -f "$fresh"' EXIT
cbindgen --quiet --config cbindgen.toml --crate dragent-tunnel --output "$fresh"
# c-api.md fixes `#define DTUN_WAIT_FOREVER (-1)`; cbindgen drops the parentheses, without
# which `t-DTUN_WAIT_FOREVER` would read `t--1`.
sed -i 's/^#define DTUN_WAIT_FOREVER -1$/#define DTUN_WAIT_FOREVER (-1)/' "$fresh"
grep -q '^#define DTUN_WAIT_FOREVER (-1)$' "$fresh"
if [ "${1:-}" = "--verify" ]; then
    if ! diff -u "$header" "$fresh"; then
        echo "$header is stale: run scripts/gen-header.sh and commit it" >&2
        exit 1
    fi
    echo "$header is up to date"
else
    cp "$fresh" "$header"
    echo "wrote $header"
fi
