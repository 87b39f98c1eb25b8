#!/usr/bin/env bash
# The demo: the README's first command. Needs only the Rust toolchain and a C compiler.
#
# Builds the library and the agent_client example, starts a local environment (the in-repo
# CONNECT proxy with TLS and Basic auth, and a collector that speaks the agent's framing and
# acknowledges each message, with certificates made on the spot), writes the dragent.yaml
# for it, and runs agent_client through the full TLS-in-TLS path. Everything it starts stops
# when it ends; its files live under build/demo.
#
#   scripts/demo.sh            the embedded proxy
#   scripts/demo.sh --squid    the same through real squid (squid-openssl must be installed)
set -euo pipefail
cd "$(dirname "$0")/.."

scenario=framed.yaml
testenv_args=(--verbose)
case "${1:-}" in
    "") ;;
    --squid)
        command -v squid >/dev/null || { echo "squid is not installed (Debian: apt-get install -y squid-openssl)" >&2; exit 1; }
        scenario=squid_framed.yaml
        # --no-ntlm: without the squid asking for NTLM, whose helper needs a Python
        # virtualenv with pyspnego (scripts/test.sh makes it); the demo uses plain squid only.
        testenv_args+=(--real-proxies --no-ntlm)
        ;;
    *) echo "usage: scripts/demo.sh [--squid]" >&2; exit 2 ;;
esac

echo "==> building the library and the test environment (cargo build --release)"
cargo build --release --quiet -p dragent-tunnel -p dtun-testenv

echo "==> building c-examples/agent_client.c against the static library"
out=build/demo
mkdir -p "$out"
cc -std=c11 -Wall -Wextra -Werror -O2 -Iinclude c-examples/agent_client.c \
    target/release/libdragent_tunnel.a -lpthread -ldl -lm -lrt -lutil \
    -o "$out/agent_client"

echo "==> starting the local environment and running agent_client through it"
rm -rf "$out/env"
target/release/dtun-testenv run --dir "$out/env" "${testenv_args[@]}" -- \
    sh -c 'echo "--- dragent.yaml used (password hidden):"; sed "s/\(proxy_password:\).*/\1 <hidden>/" "$DTUN_TESTENV_DIR/'"$scenario"'"; echo "---"; exec "$0" "$DTUN_TESTENV_DIR/'"$scenario"'" 5' \
    "$out/agent_client"
echo "==> demo finished: every message went agent -> TLS proxy -> TLS collector and was acknowledged"
