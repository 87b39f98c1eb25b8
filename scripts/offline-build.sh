#!/bin/sh
# The builds that users without network, or building for an explicit target, do (README
# "Offline and cross builds"), in one CMake build:
#
#   1. `cargo vendor` copies every crate of Cargo.lock into build/offline/vendor;
#   2. cargo then runs with an empty CARGO_HOME whose config.toml points crates-io at that
#      directory, and CARGO_NET_OFFLINE=true: nothing can come from the network or from
#      ~/.cargo's caches;
#   3. CMake is configured with CARGO_NET_OFFLINE in the environment (so DTUN_CARGO_OFFLINE
#      defaults to ON and cargo gets --offline --locked) and CARGO_BUILD_TARGET set to the
#      host's triple (so DTUN_RUST_TARGET defaults to it and cargo's outputs are found under
#      target/<triple>/);
#   4. the library is built (dev profile: this proves the build's plumbing, not the
#      optimiser; the release build is everywhere else in CI) and checked: its exports, and
#      that cargo's outputs came from target/<triple>/.
#
#   scripts/offline-build.sh
set -eu
cd "$(dirname "$0")/.."

work=build/offline
jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
step() { printf '\n==> %s\n' "$*"; }
run() { printf '+ %s\n' "$*"; "$@"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

host=$(rustc -vV | sed -n 's/^host: //p')
[ -n "$host" ] || fail "cannot read the host triple from rustc -vV"
rm -rf "$work"
mkdir -p "$work/cargo-home"
root=$(pwd)

step "cargo vendor into $work/vendor"
# The one step that may use the network (or ~/.cargo's cache, when it holds every crate).
run cargo vendor --locked --versioned-dirs "$work/vendor" >"$work/vendor-config.toml"
cat >"$work/cargo-home/config.toml" <<EOF
[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "$root/$work/vendor"
EOF

step "CMake build offline from the vendored sources, for the explicit target $host"
# rustup's cargo and rustc find their toolchain through RUSTUP_HOME, not CARGO_HOME.
RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}
export RUSTUP_HOME
run env CARGO_HOME="$root/$work/cargo-home" CARGO_NET_OFFLINE=true CARGO_BUILD_TARGET="$host" \
    cmake -S . -B "$work/cmake" -DCARGO_PROFILE=dev -DBUILD_TESTING=OFF \
    -DDTUN_BUILD_EXAMPLES=OFF -DDTUN_BUILD_TOOLS=OFF
grep -q '^DTUN_CARGO_OFFLINE:BOOL=ON$' "$work/cmake/CMakeCache.txt" ||
    fail "CARGO_NET_OFFLINE=true did not turn DTUN_CARGO_OFFLINE on"
grep -q "^DTUN_RUST_TARGET:STRING=$host\$" "$work/cmake/CMakeCache.txt" ||
    fail "CARGO_BUILD_TARGET did not set DTUN_RUST_TARGET"
# No network from here on: an empty CARGO_HOME (no registry index, no cached crates) and
# --offline; a crate missing from the vendor directory fails the build.
grep -q -- '--locked --offline --target' "$work/cmake/CMakeFiles/dragent_tunnel_cargo.dir/build.make" ||
    fail "the cargo command line lacks --locked --offline --target"
run env CARGO_HOME="$root/$work/cargo-home" CARGO_NET_OFFLINE=true \
    cmake --build "$work/cmake" --parallel "$jobs"
[ -f "$work/cmake/cargo/$host/debug/libdragent_tunnel.a" ] ||
    fail "cargo's archive is not under target/$host/debug"
[ ! -e "$work/cmake/cargo/debug/libdragent_tunnel.a" ] ||
    fail "cargo built into the host directory too: --target was not passed"
sh abi/check-abi.sh exports "$work/cmake/lib/libdragent_tunnel.so.0" include/dragent_tunnel.h
step "offline, vendored, explicit-target build: passed"
