#!/bin/sh
# Debian packages of dragent-tunnel (README "Packages"):
#
#   scripts/package.sh           builds build/packages/libdragent-tunnel0_*.deb,
#                                libdragent-tunnel-dev_*.deb and dragent-tunnel-tools_*.deb
#   scripts/package.sh --test    then, as root on a Debian machine (CI): installs them with
#                                dpkg -i, checks them, builds the three consumers (pkg-config,
#                                find_package, static) against /usr and runs each through a
#                                tunnel, runs dtun-check on a working and a failing
#                                dragent.yaml, removes the packages with dpkg -r and checks
#                                that nothing is left behind.
#
# Needs: cargo, cmake (cpack), a C compiler, dpkg-dev (dpkg-shlibdeps), file, help2man.
# The CMake build tree is build/package; it reuses build/cmake's cargo build when there is one
# (scripts/c-tests.sh makes it), so the library is not compiled twice.
set -eu
cd "$(dirname "$0")/.."

build=build/package
out=build/packages
jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
mode=${1:-build}

step() { printf '\n==> %s\n' "$*"; }
run() { printf '+ %s\n' "$*"; "$@"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

case $mode in build | --test) ;; *) fail "usage: scripts/package.sh [--test]" ;; esac
for tool in cargo cmake cpack cc dpkg-shlibdeps dpkg-deb file help2man; do
    command -v "$tool" >/dev/null 2>&1 ||
        fail "$tool is not installed (Debian: apt-get install -y cmake gcc dpkg-dev file help2man)"
done

cargo_dir=
if [ -d build/cmake/cargo ]; then
    cargo_dir=-DDTUN_CARGO_TARGET_DIR=$(pwd)/build/cmake/cargo
fi

step "configure and build (prefix /usr, build tree $build)"
# DTUN_GSSAPI=OFF, as scripts/c-tests.sh (which shares this build tree's cargo output): the
# packages' static library must link into -static programs.
run cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr -DDTUN_GSSAPI=OFF \
    -DBUILD_TESTING=OFF -DDTUN_BUILD_EXAMPLES=OFF -DDTUN_BUILD_TOOLS=ON \
    -DDTUN_REQUIRE_MAN_PAGE=ON ${cargo_dir:+"$cargo_dir"}
run cmake --build "$build" --parallel "$jobs"

step "cpack: the three packages into $out"
rm -rf "$out"
mkdir -p "$out"
run cpack --config "$build/CPackConfig.cmake" -B "$out"
rm -rf "$out/_CPack_Packages"
ls -l "$out"

version=$(sed -n 's/^version = "\([0-9.]*\)"$/\1/p' Cargo.toml | head -n 1)
runtime=$(ls "$out"/libdragent-tunnel0_"$version"-*.deb)
dev=$(ls "$out"/libdragent-tunnel-dev_"$version"-*.deb)
tools=$(ls "$out"/dragent-tunnel-tools_"$version"-*.deb)

step "check the packages' contents and relations"
contents() { dpkg-deb -c "$1" | awk '{ print $6 }' | sed 's|^\./|/|' >"$out/contents"; cat "$out/contents"; rm -f "$out/contents"; }
field() { dpkg-deb -f "$1" "$2"; }
for deb in "$runtime" "$dev" "$tools"; do
    printf '%s: %s %s, Depends: %s\n' "$(basename "$deb")" "$(field "$deb" Package)" \
        "$(field "$deb" Version)" "$(field "$deb" Depends)"
    [ "$(field "$deb" Version)" = "$version-1" ] || fail "$deb: version is not $version-1"
    pkg=$(field "$deb" Package)
    contents "$deb" | grep -q -x "/usr/share/doc/$pkg/copyright" ||
        fail "$deb has no /usr/share/doc/$pkg/copyright"
done
contents "$runtime" | grep -q -E '/usr/lib/[^/]+/libdragent_tunnel\.so\.0$' || fail "runtime: no SONAME link"
contents "$runtime" | grep -q -E "/usr/lib/[^/]+/libdragent_tunnel\\.so\\.$version\$" || fail "runtime: no library"
! contents "$runtime" | grep -q -E 'libdragent_tunnel\.so$|\.a$|\.h$' || fail "runtime holds development files"
for f in /usr/include/dragent_tunnel.h /usr/include/dragent_tunnel.hpp; do
    contents "$dev" | grep -q -x "$f" || fail "dev: $f missing"
done
for f in 'libdragent_tunnel\.so' 'libdragent_tunnel\.a' 'pkgconfig/dragent-tunnel\.pc' \
    'cmake/DragentTunnel/DragentTunnelConfig\.cmake'; do
    contents "$dev" | grep -q -E "/usr/lib/[^/]+/$f\$" || fail "dev: $f missing"
done
contents "$tools" | grep -q -x /usr/bin/dtun-check || fail "tools: no /usr/bin/dtun-check"
contents "$tools" | grep -q -x /usr/share/man/man1/dtun-check.1.gz || fail "tools: no man page"
field "$runtime" Depends | grep -q 'libc6' || fail "runtime: Depends names no libc6 (dpkg-shlibdeps did not run?)"
field "$dev" Depends | grep -q -x "libdragent-tunnel0 (= $version-1)" || fail "dev: Depends is not libdragent-tunnel0 (= $version-1)"
field "$tools" Depends | grep -q "libdragent-tunnel0 (>= $version)" || fail "tools: Depends lacks libdragent-tunnel0 (>= $version)"
field "$tools" Depends | grep -q 'libc6' || fail "tools: Depends names no libc6"
dpkg-deb --ctrl-tarfile "$runtime" | tar -xO ./shlibs 2>/dev/null |
    grep -q -x "libdragent_tunnel 0 libdragent-tunnel0 (>= $version-1)" ||
    fail "runtime: no shlibs entry 'libdragent_tunnel 0 libdragent-tunnel0 (>= $version-1)'"
echo "ok: contents, versions, Depends, shlibs, copyright"

[ "$mode" = --test ] || exit 0

# ---- install, use, remove ------------------------------------------------------------------

[ "$(id -u)" -eq 0 ] || fail "--test installs packages: run it as root"
testenv=build/cmake/cargo/debug/dtun-testenv
[ -x "$testenv" ] || fail "$testenv is missing: run scripts/c-tests.sh first"
for pkg in libdragent-tunnel0 libdragent-tunnel-dev dragent-tunnel-tools; do
    if dpkg-query -W -f '${db:Status-Status}' "$pkg" 2>/dev/null | grep -q -x installed; then
        fail "$pkg is already installed: this test would remove it"
    fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/dtun-package-test.XXXXXX")
installed=no
cleanup() {
    status=$?
    if [ "$installed" = yes ]; then
        dpkg --purge dragent-tunnel-tools libdragent-tunnel-dev libdragent-tunnel0 >/dev/null 2>&1 || true
    fi
    if [ "$status" -eq 0 ]; then rm -rf "$work"; else echo "kept $work for inspection" >&2; fi
}
trap cleanup EXIT

step "dpkg -i the three packages"
installed=yes
run dpkg -i "$runtime" "$dev" "$tools"
dpkg -L libdragent-tunnel0 libdragent-tunnel-dev dragent-tunnel-tools | sort -u >"$work/files"
ldconfig -p | grep -q 'libdragent_tunnel\.so\.0 ' || fail "ldconfig does not know libdragent_tunnel.so.0"
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || cc -print-multiarch)
lib=/usr/lib/$multiarch/libdragent_tunnel.so.$version
sh abi/check-abi.sh exports "$lib" /usr/include/dragent_tunnel.h
echo "ok: installed; $(pkg-config --modversion dragent-tunnel) from pkg-config"

run_env() {
    name=$1
    shift
    run "$testenv" run --dir "$work/env-$name" -- "$@"
}

step "consumers against /usr: pkg-config, find_package, static"
# shellcheck disable=SC2046
run cc -std=c11 -Wall -Wextra -Werror -o "$work/consumer_pkgconfig" tests/consumers/consumer.c \
    $(pkg-config --cflags --libs dragent-tunnel)
readelf -d "$work/consumer_pkgconfig" | grep -q 'RUNPATH\|RPATH' && fail "consumer_pkgconfig needs an RPATH"
run_env pkgconfig sh -c '"$1" "$2"' sh "$work/consumer_pkgconfig" "$work/env-pkgconfig/direct_tls.yaml"
run cmake -S tests/consumers/find_package -B "$work/find_package" -DCMAKE_BUILD_TYPE=Release
run cmake --build "$work/find_package" --parallel "$jobs"
for c in consumer_shared consumer_static consumer_fully_static; do
    run_env "fp-$c" sh -c '"$1" "$2"' sh "$work/find_package/$c" "$work/env-fp-$c/direct_tls.yaml"
done
# shellcheck disable=SC2046
run cc -std=c11 -Wall -Wextra -Werror -o "$work/consumer_static" tests/consumers/consumer.c \
    $(pkg-config --cflags dragent-tunnel) "$(pkg-config --variable=libdir dragent-tunnel)/libdragent_tunnel.a" \
    $(pkg-config --variable=native_static_libs dragent-tunnel)
! readelf -d "$work/consumer_static" | grep -q libdragent_tunnel || fail "consumer_static needs the .so"
run_env static sh -c '"$1" "$2"' sh "$work/consumer_static" "$work/env-static/direct_tls.yaml"

step "dtun-check: --help, the man page, a working and a failing dragent.yaml"
dtun-check --help | grep -q '^Usage: dtun-check DRAGENT_YAML$' || fail "dtun-check --help"
dtun-check --version | grep -q -x "dtun-check (dragent-tunnel) $version" || fail "dtun-check --version"
man_text=$(gzip -dc /usr/share/man/man1/dtun-check.1.gz)
printf '%s\n' "$man_text" | grep -q -x '.B dtun-check' || fail "the man page lacks the synopsis"
printf '%s\n' "$man_text" | grep -q 'DRAGENT_YAML' || fail "the man page lacks the usage line"
printf '%s\n' "$man_text" | grep -q -i 'exit status' || fail "the man page lacks the exit status"
run_env check_ok sh -c 'out=$(dtun-check "$1") || { echo "$out"; exit 1; }; echo "$out" | grep -x "OK: the tunnel opens"' \
    sh "$work/env-check_ok/proxy_tls_auth.yaml"
run_env check_fail sh -c 'status=0; out=$(dtun-check "$1") || status=$?; echo "$out";
    [ "$status" -eq 1 ] && echo "$out" | grep -q "^  status: DTUN_ERR_PROXY_AUTH (122)$" &&
    echo "$out" | grep -q "^  change: .*proxy_password"' sh "$work/env-check_fail/proxy_auth_wrong.yaml"

step "dpkg -r: nothing left behind"
run dpkg -r dragent-tunnel-tools libdragent-tunnel-dev libdragent-tunnel0
installed=no
# A package with a maintainer script (the runtime's ldconfig postrm) stays known to dpkg as
# config-files until purged; it has no conffiles, so nothing of it is on disk.
for pkg in libdragent-tunnel0 libdragent-tunnel-dev dragent-tunnel-tools; do
    state=$(dpkg-query -W -f '${db:Status-Status}' "$pkg" 2>/dev/null || echo not-installed)
    case $state in
    not-installed) ;;
    config-files)
        [ -z "$(dpkg-query -W -f '${Conffiles}' "$pkg")" ] || fail "$pkg left conffiles"
        run dpkg --purge "$pkg"
        ;;
    *) fail "$pkg is '$state' after dpkg -r" ;;
    esac
done
left=$(while read -r f; do
    # Directories the system owns (/usr, /usr/lib/x86_64-linux-gnu...) stay, as they should.
    if [ -e "$f" ] && [ ! -d "$f" ]; then echo "$f"; fi
    if [ -d "$f" ] && [ -z "$(dpkg -S "$f" 2>/dev/null)" ] && [ -z "$(ls -A "$f")" ]; then echo "$f"; fi
done <"$work/files")
[ -z "$left" ] || fail "left behind after dpkg -r: $left"
! ldconfig -p | grep -q libdragent_tunnel || fail "ldconfig still lists libdragent_tunnel"
echo "ok: removed, no file left, ldconfig cache clean"
step "packages: built, installed, used, removed"
