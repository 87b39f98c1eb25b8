#!/bin/sh
# The ABI checks of libdragent_tunnel (issue 14, "A stable ABI"). POSIX sh, binutils and
# libabigail (Debian: abigail-tools) only.
#
#   abi/check-abi.sh functions HEADER
#       the functions HEADER declares, one name a line (the C preprocessor reads the header,
#       so comments and line wrapping do not matter)
#   abi/check-abi.sh exports LIBRARY HEADER
#       LIBRARY's dynamic symbol table defines exactly the functions HEADER declares, each
#       under the version node DTUN_0 (dtun_open@@DTUN_0), and nothing else
#   abi/check-abi.sh dump HEADER OUT.abi
#       the ABI HEADER describes, as libabigail's abidw writes it (see "Why a stub" below)
#   abi/check-abi.sh compare BASELINE.abi HEADER
#       fails when HEADER breaks the baseline: a function removed, a function's parameters or
#       return type changed, an enum value changed or removed, a type changed. Additions (a
#       function, an enumerator with a new number) pass.
#
# Why a stub: libabigail reads types from DWARF. The Rust library's DWARF describes Rust
# types (and changes with each rustc), while C programs are compiled against the header. So
# `dump` compiles a stub library from the header itself: every declared function defined
# with an empty body, linked with the library's own version script and SONAME, with debug
# info. Its ABI is the header's ABI exactly as a C compiler sees it. `exports` then ties the
# real library to the header: the same functions, the same version node.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
map=$here/libdragent_tunnel.map
node=DTUN_0
cc=${CC:-cc}

die() {
    printf 'check-abi: %s\n' "$*" >&2
    exit 1
}

# One top-level declaration a line, from the preprocessed header.
declarations() {
    "$cc" -E -P -x c "$1" | tr '\n' ' ' | tr ';' '\n' | sed 's/^ *//'
}

# Function declarations: `RET dtun_name(ARGS)`, no typedef (the logger's function pointer
# type is `typedef void (*dtun_log_fn)(...)`), no body.
function_declarations() {
    declarations "$1" | grep -E '(^|[^A-Za-z0-9_])dtun_[A-Za-z0-9_]+ *\(' |
        grep -v -E '^typedef|[{}]' || true
}

functions() {
    function_declarations "$1" |
        sed -E 's/^.*[^A-Za-z0-9_](dtun_[A-Za-z0-9_]+) *\(.*$/\1/' | sort -u
}

cmd=${1:-}
[ $# -ge 1 ] && shift
case $cmd in
functions)
    [ $# -eq 1 ] || die "usage: check-abi.sh functions HEADER"
    functions "$1"
    ;;
exports)
    [ $# -eq 2 ] || die "usage: check-abi.sh exports LIBRARY HEADER"
    lib=$1
    header=$2
    expected=$(functions "$header")
    [ -n "$expected" ] || die "$header declares no dtun_ function"
    # nm -D prints versioned names as name@@NODE (default version) or name@NODE.
    defined=$(nm -D --defined-only "$lib" | awk '{ print $3 }' | grep -v -x "$node" | sort)
    status=0
    unversioned=$(printf '%s\n' "$defined" | grep -v -E "@@$node\$" || true)
    if [ -n "$unversioned" ]; then
        printf 'check-abi: %s exports symbols that are not NAME@@%s:\n%s\n' "$lib" "$node" "$unversioned" >&2
        status=1
    fi
    names=$(printf '%s\n' "$defined" | sed 's/@.*//' | sort -u)
    missing=$(printf '%s\n' "$expected" | grep -v -x -F "$names" || true)
    extra=$(printf '%s\n' "$names" | grep -v -x -F "$expected" || true)
    if [ -n "$missing" ]; then
        printf 'check-abi: declared in %s but not exported by %s:\n%s\n' "$header" "$lib" "$missing" >&2
        status=1
    fi
    if [ -n "$extra" ]; then
        printf 'check-abi: exported by %s but not declared in %s:\n%s\n' "$lib" "$header" "$extra" >&2
        status=1
    fi
    readelf -V "$lib" | grep -q "Name: $node\$" || {
        printf 'check-abi: %s defines no version node %s\n' "$lib" "$node" >&2
        status=1
    }
    [ "$status" -eq 0 ] || exit 1
    echo "ok: $lib exports exactly the $(printf '%s\n' "$expected" | wc -l) functions of $(basename "$header"), each @@$node"
    ;;
dump)
    [ $# -eq 2 ] || die "usage: check-abi.sh dump HEADER OUT.abi"
    header=$1
    out=$2
    command -v abidw >/dev/null || die "abidw not found (Debian: apt-get install -y abigail-tools)"
    work=$(mktemp -d "${TMPDIR:-/tmp}/dtun-abi.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    cp "$header" "$work/dragent_tunnel.h"
    {
        echo '#include "dragent_tunnel.h"'
        function_declarations "$header" | sed 's/$/ { __builtin_trap(); }/'
    } >"$work/stub.c"
    # Relative names in the DWARF: nothing of this machine ends up in the baseline.
    (cd "$work" && "$cc" -g -O0 -fPIC -shared -fno-eliminate-unused-debug-types \
        -fdebug-prefix-map="$work"=. -o libdragent_tunnel.so.0 stub.c \
        -Wl,--version-script="$map" -Wl,-soname,libdragent_tunnel.so.0)
    abidw --no-corpus-path --no-comp-dir-path --no-show-locs --no-elf-needed \
        --type-id-style hash --out-file "$out" "$work/libdragent_tunnel.so.0"
    ;;
compare)
    [ $# -eq 2 ] || die "usage: check-abi.sh compare BASELINE.abi HEADER"
    baseline=$1
    header=$2
    command -v abidiff >/dev/null || die "abidiff not found (Debian: apt-get install -y abigail-tools)"
    work=$(mktemp -d "${TMPDIR:-/tmp}/dtun-abi-cmp.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    "$0" dump "$header" "$work/current.abi"
    status=0
    abidiff "$baseline" "$work/current.abi" >"$work/report" 2>&1 || status=$?
    cat "$work/report"
    # abidiff's status is a bit set: 1 error, 2 usage error, 4 an ABI change, 8 an
    # incompatible one (a removed function, say). A change that is not an addition (a
    # changed parameter, a renumbered enumerator) sets only 4, like an addition does, so the
    # summary lines decide: nothing Removed, nothing Changed. libabigail counts a new
    # enumerator as harmless and filters it out of "Changed".
    if [ $((status & 3)) -ne 0 ]; then
        die "abidiff failed (status $status)"
    fi
    if [ $((status & 8)) -ne 0 ]; then
        die "incompatible ABI change against $(basename "$baseline") (abidiff status $status)"
    fi
    if grep -E '(^|[^0-9])[1-9][0-9]* (Removed|Changed)' "$work/report" >/dev/null; then
        die "ABI change that is not an addition against $(basename "$baseline"): see the report above"
    fi
    echo "ok: $(basename "$header") is compatible with $(basename "$baseline") (additions only)"
    ;;
*)
    die "usage: check-abi.sh functions|exports|dump|compare ..."
    ;;
esac
