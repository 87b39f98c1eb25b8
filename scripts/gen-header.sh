#!/usr/bin/env bash
# Regenerates include/dragent_tunnel.h with the pinned cbindgen; --verify fails when the
# committed header differs from a fresh generation instead of writing it.
set -euo pipefail
cd "$(dirname "$0")/.."
header=include/dragent_tunnel.h
fresh=$(mktemp)
trap 'rm -f "$fresh"' EXIT
cbindgen --quiet --config cbindgen.toml --crate dragent-tunnel --output "$fresh"
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
