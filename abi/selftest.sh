#!/bin/sh
# Proves that abi/check-abi.sh compare can fail: broken copies of the header (a function
# removed, an enumerator renumbered, a parameter's type changed, a function's return type
# changed) must each be refused against the baseline, and a copy with additions only (a new
# function, a new enumerator) accepted.
#
#   abi/selftest.sh BASELINE.abi HEADER
set -eu
[ $# -eq 2 ] || { echo "usage: selftest.sh BASELINE.abi HEADER" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
baseline=$1
header=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/dtun-abi-selftest.XXXXXX")
trap 'rm -rf "$work"' EXIT
failures=0

# variant NAME EXPECT SED_SCRIPT: a copy of the header edited by SED_SCRIPT; EXPECT is
# "refused" or "accepted".
variant() {
    name=$1 expect=$2 script=$3
    copy=$work/$name.h
    sed -E "$script" "$header" >"$copy"
    if cmp -s "$header" "$copy"; then
        echo "FAIL: $name: the edit changed nothing (has the header changed? update abi/selftest.sh)"
        failures=$((failures + 1))
        return
    fi
    if "$here/check-abi.sh" compare "$baseline" "$copy" >"$work/$name.log" 2>&1; then
        got=accepted
    else
        got=refused
    fi
    if [ "$got" = "$expect" ]; then
        echo "ok: $name: $got"
    else
        echo "FAIL: $name: $got, expected $expect; the check said:"
        sed 's/^/    /' "$work/$name.log"
        failures=$((failures + 1))
    fi
}

variant removed_function refused '/^void dtun_close\(/d'
variant renumbered_enumerator refused 's/^( *DTUN_ERR_IO = )140,/\1141,/'
variant changed_parameter refused 's/^(enum dtun_status dtun_open\(.*)int32_t timeout_ms/\1int64_t timeout_ms/'
variant changed_return_type refused 's/^const char \*dtun_version\(void\);/int dtun_version(void);/'
variant additions accepted 's/^( *DTUN_ERR_IO = 140,)/\1\n  DTUN_ERR_SELFTEST_ADDED = 150,/; s/^(void dtun_close\(.*)$/\1\nint dtun_selftest_added(int x);/'

# The unchanged header passes, or the variants above prove nothing.
if "$here/check-abi.sh" compare "$baseline" "$header" >"$work/unchanged.log" 2>&1; then
    echo "ok: unchanged header: accepted"
else
    echo "FAIL: the unchanged header is refused:"
    sed 's/^/    /' "$work/unchanged.log"
    failures=$((failures + 1))
fi
[ "$failures" -eq 0 ] || { echo "$failures variant(s) wrong"; exit 1; }
