#!/usr/bin/env bash
# The full test suite: the README's test command, and what .ci/run calls.
#
# Installs what the tests need when it is missing (Debian packages as root, the pinned
# cbindgen from crates.io), then: format and lint checks, the committed header against a
# fresh cbindgen run, every Rust test (unit, property, end to end, real squid and
# tinyproxy), the C tests and examples under ctest (one under valgrind), and the installed
# package consumed by pkg-config, find_package and a static link.
#
# The real-proxy tests may not skip here: a missing squid or tinyproxy is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

CBINDGEN_VERSION=0.29.0
step() { printf '\n==> %s\n' "$*"; }

step "dependencies"
need_pkgs=()
command -v squid >/dev/null || need_pkgs+=(squid-openssl)
command -v tinyproxy >/dev/null || need_pkgs+=(tinyproxy)
command -v cmake >/dev/null || need_pkgs+=(cmake)
command -v htpasswd >/dev/null || need_pkgs+=(apache2-utils)
# Apache httpd as a second real Digest proxy (mod_proxy_connect, mod_auth_digest).
[ -x /usr/sbin/apache2 ] || need_pkgs+=(apache2)
command -v valgrind >/dev/null || need_pkgs+=(valgrind)
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v pkg-config >/dev/null || need_pkgs+=(pkg-config)
command -v cc >/dev/null || need_pkgs+=(gcc)
command -v c++ >/dev/null || need_pkgs+=(g++)
pkg-config --exists libcurl 2>/dev/null || need_pkgs+=(libcurl4-openssl-dev)
command -v abidiff >/dev/null || need_pkgs+=(abigail-tools)
command -v clang++ >/dev/null || need_pkgs+=(clang)
# The real NTLM validator (testenv/ntlm/) runs on pyspnego in a virtualenv: python3 and venv.
[ -x /usr/bin/python3 ] || need_pkgs+=(python3)
/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || need_pkgs+=(python3-venv)
command -v dpkg-shlibdeps >/dev/null || need_pkgs+=(dpkg-dev)
command -v file >/dev/null || need_pkgs+=(file)
command -v help2man >/dev/null || need_pkgs+=(help2man)
# Negotiate (Kerberos): a real MIT KDC on loopback (dtun_testenv::kdc), kinit, and the
# GSSAPI headers for the gssapi feature (its bindgen uses clang's libclang, installed above).
command -v krb5kdc >/dev/null || [ -x /usr/sbin/krb5kdc ] || need_pkgs+=(krb5-kdc)
command -v kadmin.local >/dev/null || [ -x /usr/sbin/kadmin.local ] || need_pkgs+=(krb5-admin-server)
command -v kinit >/dev/null || need_pkgs+=(krb5-user)
pkg-config --exists krb5-gssapi 2>/dev/null || need_pkgs+=(libkrb5-dev)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "missing: ${need_pkgs[*]}; install them (Debian: apt-get install -y ${need_pkgs[*]}) or run this as root" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need_pkgs[@]}"
fi
# Debian starts neither proxy on install here; our tests start their own on loopback.

# pyspnego (PyPI) for squid's NTLM helper, in a virtualenv under cargo's target directory;
# the tests find it through DTUN_NTLM_VENV (dtun_testenv::ntlm), and fail without it.
# Debian's interpreter: squid runs its helpers as user proxy, who cannot reach one under
# /root (pyenv's, say), and a virtualenv's python3 is only a link to its base interpreter.
PYSPNEGO_VERSION=0.12.4
ntlm_python=/usr/bin/python3
ntlm_venv=${DTUN_NTLM_VENV:-${CARGO_TARGET_DIR:-target}/ntlm-venv}
if ! grep -qx "home = $(dirname "$ntlm_python")" "$ntlm_venv/pyvenv.cfg" 2>/dev/null ||
    ! "$ntlm_venv/bin/python3" -c "import sys, importlib.metadata as m; sys.exit(m.version('pyspnego') != '$PYSPNEGO_VERSION')" 2>/dev/null; then
    "$ntlm_python" -m venv --clear "$ntlm_venv"
    "$ntlm_venv/bin/pip" install --quiet --disable-pip-version-check "pyspnego==$PYSPNEGO_VERSION"
fi
DTUN_NTLM_VENV=$(cd "$ntlm_venv" && pwd)
export DTUN_NTLM_VENV
if ! cbindgen --version 2>/dev/null | grep -qx "cbindgen $CBINDGEN_VERSION"; then
    cargo install cbindgen --version "$CBINDGEN_VERSION" --locked
fi

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "header is what cbindgen generates"
scripts/gen-header.sh --verify

step "cargo test (unit, property, end to end, real proxies)"
# No grep for SKIPPED here: the test harness hides what passing tests print, so it would
# never see one. Under DTUN_REQUIRE_REAL_PROXIES=1 a test that would skip fails instead,
# naming what is missing (dtun_testenv::require_or_skip).
DTUN_REQUIRE_REAL_PROXIES=1 cargo test --workspace --locked

step "Negotiate (Kerberos) with the gssapi feature: lint, unit tests, real KDC, squid's helper, squid end to end, and the C API"
cargo clippy --workspace --all-targets --locked --features gssapi -- -D warnings
cargo test --locked --features gssapi --lib proxy::negotiate
DTUN_REQUIRE_REAL_PROXIES=1 cargo test --locked --features gssapi --test negotiate --test real_negotiate
# Through the C API: a CMake build tree of its own (build/cmake-gssapi) whose library has the
# feature, test_matrix and tunnel_check against a real KDC and squid (dtun-testenv --negotiate).
# It reuses cargo's dev build of the steps above (dependencies with the gssapi feature, and
# dtun-testenv, which does not link the library), so only the library is compiled again.
cargo_target=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)
DTUN_REQUIRE_REAL_PROXIES=ON DTUN_CARGO_PROFILE=dev DTUN_CARGO_TARGET_DIR="$cargo_target" \
    DTUN_TESTENV_EXECUTABLE="$cargo_target/debug/dtun-testenv" scripts/c-tests.sh --negotiate

step "C tests, examples and package consumers"
DTUN_REQUIRE_REAL_PROXIES=ON DTUN_REQUIRE_VALGRIND=ON DTUN_REQUIRE_ABIGAIL=ON DTUN_REQUIRE_CLANG=ON \
    scripts/c-tests.sh

step "Debian packages: built, installed with dpkg -i, used against /usr, removed"
# Reuses build/cmake's cargo build and dtun-testenv from the step above.
scripts/package.sh --test

step "offline build from cargo vendor, with an explicit Rust target"
scripts/offline-build.sh

step "fuzzing (each cargo-fuzz target, bounded time)"
scripts/fuzz.sh 20
