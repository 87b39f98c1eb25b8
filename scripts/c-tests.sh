#!/bin/sh
# The C side of the test suite (issue 3), from a clean clone:
#
#   1. configure and build with CMake into build/cmake (the library through cargo, the
#      examples, the C tests, and the dtun-testenv test environment);
#   2. run ctest: the C tests, the examples, and one test under valgrind when it is installed;
#   3. install into a temporary prefix and check the installed files (SONAME, symlinks,
#      exported symbols against the header under version node DTUN_0, pkg-config module,
#      CMake package);
#   4. build three consumers against that prefix, as users would (pkg-config, find_package,
#      static linking, and fully static programs with -static from both), plus the C++
#      example against the installed C++ header, and run each inside the test environment:
#      each opens a tunnel and echoes a few bytes.
#
# Usage: scripts/c-tests.sh            (from anywhere; it works from the repository root)
#        DTUN_REQUIRE_REAL_PROXIES=ON DTUN_REQUIRE_VALGRIND=ON scripts/c-tests.sh
#                                     (fail, not skip, without squid/tinyproxy or valgrind)
#        scripts/c-tests.sh --negotiate
#                                     (only Negotiate through the C API, in a second build
#                                     tree, build/cmake-gssapi, whose library has the gssapi
#                                     feature: see below)
# Needs: cargo, cmake >= 3.20, a C and a C++ compiler, pkg-config, readelf and nm (binutils);
# valgrind, squid-openssl and tinyproxy are optional (their tests are skipped without them).
# Exits non-zero at the first failure, saying which step failed.
set -eu

cd "$(dirname "$0")/.."

negotiate=0
case ${1:-} in
    --negotiate) negotiate=1 ;;
    "") ;;
    *)
        echo "usage: scripts/c-tests.sh [--negotiate]" >&2
        exit 2
        ;;
esac

build=build/cmake
testenv=$build/cargo/debug/dtun-testenv
jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)

step() {
    printf '\n==> %s\n' "$*"
}

run() {
    printf '+ %s\n' "$*"
    "$@"
}

fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

for tool in cargo cmake ctest cc pkg-config readelf nm; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed"
done

# --negotiate: Negotiate (Kerberos) through the C API. The main build below has the gssapi
# feature off (it links fully static programs, and Debian has no static libgssapi_krb5), so
# this is a build tree of its own with the feature on and required, of which only what the
# Negotiate tests run is built: the shared library, test_matrix, tunnel_check, dtun-testenv.
# ctest then runs the tests labelled negotiate there (a real MIT KDC and squid with
# negotiate_kerberos_auth, started by dtun-testenv --negotiate); none registered is a failure.
# DTUN_TESTENV_EXECUTABLE=PATH uses a dtun-testenv built already (it does not link the
# library, so any build of it serves) instead of building one in this tree.
if [ "$negotiate" -eq 1 ]; then
    build=build/cmake-gssapi
    step "configure (build tree $build, the library with the gssapi feature)"
    # DTUN_CARGO_TARGET_DIR and DTUN_CARGO_PROFILE (scripts/test.sh: target/ and dev) let
    # this tree build the library where `cargo test --features gssapi` built its
    # dependencies already, so only the library itself is compiled again.
    run cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DDTUN_GSSAPI=ON \
        -DDTUN_REQUIRE_GSSAPI=ON -DDTUN_BUILD_TOOLS=OFF \
        -DCARGO_PROFILE="${DTUN_CARGO_PROFILE:-release}" \
        ${DTUN_CARGO_TARGET_DIR:+-DDTUN_CARGO_TARGET_DIR="$DTUN_CARGO_TARGET_DIR"} \
        -DDTUN_TESTENV_EXECUTABLE="${DTUN_TESTENV_EXECUTABLE:-}" \
        -DDTUN_REQUIRE_REAL_PROXIES="${DTUN_REQUIRE_REAL_PROXIES:-OFF}"
    targets="dragent_tunnel_cargo test_matrix tunnel_check"
    [ -n "${DTUN_TESTENV_EXECUTABLE:-}" ] || targets="$targets dtun_testenv"
    step "build: the library (gssapi), $targets"
    # shellcheck disable=SC2086 # a list of target names, split on purpose
    run cmake --build "$build" --parallel "$jobs" --target $targets
    step "ctest -L negotiate: Negotiate through the C API against a real KDC and squid"
    run ctest --test-dir "$build" --output-on-failure --parallel "$jobs" -L negotiate \
        --no-tests=error
    step "Negotiate through the C API: all passed"
    exit 0
fi

# DTUN_REQUIRE_REAL_PROXIES=ON and DTUN_REQUIRE_VALGRIND=ON (CI sets both) make a missing
# squid/tinyproxy or valgrind an error instead of a skipped test.
step "configure (build tree $build)"
# DTUN_GSSAPI=OFF: this build also makes the fully static consumers (-static), and MIT krb5
# ships no static libgssapi_krb5 on Debian; the gssapi feature is tested by cargo in
# scripts/test.sh (real KDC and squid's helper), and through the C API by --negotiate above.
run cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DDTUN_GSSAPI=OFF \
    -DDTUN_REQUIRE_REAL_PROXIES="${DTUN_REQUIRE_REAL_PROXIES:-OFF}" \
    -DDTUN_REQUIRE_VALGRIND="${DTUN_REQUIRE_VALGRIND:-OFF}" \
    -DDTUN_REQUIRE_ABIGAIL="${DTUN_REQUIRE_ABIGAIL:-OFF}" \
    -DDTUN_REQUIRE_CLANG="${DTUN_REQUIRE_CLANG:-OFF}"

step "build: the library through cargo, the examples, the C tests, dtun-testenv"
run cmake --build "$build" --parallel "$jobs"

# A failing test does not stop the install and consumer steps (they do not depend on it, and
# one run then reports everything); the script still fails at the end.
step "ctest: C tests and examples"
ctest_status=0
run ctest --test-dir "$build" --output-on-failure --parallel "$jobs" || ctest_status=$?

# Everything below works in a temporary directory, removed on success and kept on failure
# for a look at what went wrong.
work=$(mktemp -d "${TMPDIR:-/tmp}/dtun-c-tests.XXXXXX")
trap 'status=$?; if [ "$status" -eq 0 ]; then rm -rf "$work"; else echo "kept $work for inspection" >&2; fi' EXIT
prefix=$work/prefix

step "install into a temporary prefix"
run cmake --install "$build" --prefix "$prefix"

pc_file=$(find "$prefix" -name dragent-tunnel.pc)
[ -n "$pc_file" ] || fail "dragent-tunnel.pc was not installed"
pkgconfig_dir=$(dirname "$pc_file")
libdir=$(dirname "$pkgconfig_dir")
export PKG_CONFIG_PATH="$pkgconfig_dir"
version=$(pkg-config --modversion dragent-tunnel)
echo "installed dragent-tunnel $version, libdir $libdir"

step "check the installed files"
real=libdragent_tunnel.so.$version
for file in "$libdir/$real" "$libdir/libdragent_tunnel.a" \
    "$(pkg-config --variable=includedir dragent-tunnel)/dragent_tunnel.h" \
    "$(pkg-config --variable=includedir dragent-tunnel)/dragent_tunnel.hpp" \
    "$libdir/cmake/DragentTunnel/DragentTunnelConfig.cmake" \
    "$libdir/cmake/DragentTunnel/DragentTunnelConfigVersion.cmake" \
    "$libdir/cmake/DragentTunnel/DragentTunnelTargets.cmake"; do
    [ -f "$file" ] || fail "$file is missing"
    echo "ok: ${file#"$prefix"/}"
done
[ "$(readlink "$libdir/libdragent_tunnel.so.0")" = "$real" ] ||
    fail "libdragent_tunnel.so.0 does not point to $real"
[ "$(readlink "$libdir/libdragent_tunnel.so")" = "libdragent_tunnel.so.0" ] ||
    fail "libdragent_tunnel.so does not point to libdragent_tunnel.so.0"
echo "ok: libdragent_tunnel.so -> libdragent_tunnel.so.0 -> $real"
soname=$(readelf -d "$libdir/$real" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libdragent_tunnel.so.0" ] || fail "SONAME is '$soname', not libdragent_tunnel.so.0"
echo "ok: SONAME $soname"
# The shared library exports the C API and nothing else (the Rust code stays private): every
# function the installed header declares, each under the version node DTUN_0.
sh abi/check-abi.sh exports "$libdir/$real" \
    "$(pkg-config --variable=includedir dragent-tunnel)/dragent_tunnel.h" ||
    fail "the installed library's exports differ from the installed header's functions"
printf '+ pkg-config --cflags --libs dragent-tunnel: %s\n' "$(pkg-config --cflags --libs dragent-tunnel)"
printf '+ pkg-config --static --libs dragent-tunnel: %s\n' "$(pkg-config --static --libs dragent-tunnel)"

scenario=direct_tls.yaml

# Runs a consumer inside a fresh test environment against $scenario.
run_consumer() {
    name=$1
    shift
    env_dir=$work/env-$name
    run "$testenv" run --dir "$env_dir" -- "$@" "$env_dir/$scenario"
}

step "consumer 1: built with pkg-config --cflags --libs, run with LD_LIBRARY_PATH"
# shellcheck disable=SC2046 # pkg-config output is a list of flags, split on purpose
run cc -std=c11 -Wall -Wextra -Werror -o "$work/consumer_pkgconfig" tests/consumers/consumer.c \
    $(pkg-config --cflags --libs dragent-tunnel)
run_consumer pkgconfig env LD_LIBRARY_PATH="$libdir" "$work/consumer_pkgconfig"
# The C++ header from the installed prefix, with the same flags.
# shellcheck disable=SC2046
run c++ -std=c++17 -Wall -Wextra -Werror -pedantic -fno-exceptions -o "$work/agent_client_hpp" \
    c-examples/agent_client_hpp.cpp $(pkg-config --cflags --libs dragent-tunnel)
run_consumer pkgconfig_hpp env LD_LIBRARY_PATH="$libdir" sh -c \
    '"$1" "$2" 2 | grep -x "all 2 messages acknowledged"' sh "$work/agent_client_hpp"

step "consumer 2: CMake project with find_package(DragentTunnel)"
run cmake -S tests/consumers/find_package -B "$work/find_package" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_BUILD_TYPE=Release
run cmake --build "$work/find_package" --parallel "$jobs"
# CMake links with the installed library's full path and records its directory as RUNPATH,
# so the shared build runs without LD_LIBRARY_PATH.
run_consumer find_package_shared "$work/find_package/consumer_shared"
run_consumer find_package_static "$work/find_package/consumer_static"

step "consumer 3: linked statically with libdragent_tunnel.a and the Libs.private flags"
# pkg-config's --static --libs would name -ldragent_tunnel, which the linker resolves to the
# shared library when both are installed: name the archive itself, and add what Libs.private
# carries (the .pc file's native_static_libs variable).
# shellcheck disable=SC2046
run cc -std=c11 -Wall -Wextra -Werror -o "$work/consumer_static" tests/consumers/consumer.c \
    $(pkg-config --cflags dragent-tunnel) \
    "$(pkg-config --variable=libdir dragent-tunnel)/libdragent_tunnel.a" \
    $(pkg-config --variable=native_static_libs dragent-tunnel)
for binary in consumer_static find_package/consumer_static; do
    if readelf -d "$work/$binary" | grep -q 'libdragent_tunnel'; then
        fail "$binary still needs libdragent_tunnel.so"
    fi
    echo "ok: $binary does not need libdragent_tunnel.so"
done
run_consumer static "$work/consumer_static"

step "consumer 4: a fully static program (-static) from the same flags"
# glibc links statically, with the caveat that getaddrinfo still loads the NSS modules of the
# glibc it was linked with at run time (the linker warns about it; README "Fully static
# programs"). The unwinder comes from the compiler driver (libgcc_eh.a under -static): the
# flags must not name -lgcc_s, which has no archive.
case " $(pkg-config --variable=native_static_libs dragent-tunnel) $(pkg-config --static --libs dragent-tunnel) " in
*" -lgcc_s "*) fail "the .pc file names -lgcc_s, which -static cannot link" ;;
esac
# shellcheck disable=SC2046
run cc -static -std=c11 -Wall -Wextra -Werror -o "$work/consumer_fully_static" \
    tests/consumers/consumer.c $(pkg-config --cflags dragent-tunnel) \
    "$(pkg-config --variable=libdir dragent-tunnel)/libdragent_tunnel.a" \
    $(pkg-config --variable=native_static_libs dragent-tunnel) 2>"$work/static-link.log" ||
    { cat "$work/static-link.log" >&2; fail "the -static link failed"; }
# What the linker said (the expected warnings about getaddrinfo and getpwuid_r, no more).
cat "$work/static-link.log"
for binary in consumer_fully_static find_package/consumer_fully_static; do
    if readelf -l "$work/$binary" | grep -q INTERP || readelf -d "$work/$binary" 2>/dev/null | grep -q NEEDED; then
        fail "$binary is not a static executable"
    fi
    echo "ok: $binary is a static executable (no interpreter, no NEEDED)"
done
run_consumer fully_static "$work/consumer_fully_static"
run_consumer find_package_fully_static "$work/find_package/consumer_fully_static"

if [ "$ctest_status" -ne 0 ]; then
    fail "ctest reported failures (see its summary above); install and consumers passed"
fi
step "C tests, install and consumers: all passed"
