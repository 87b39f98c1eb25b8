#!/bin/sh
# Runs a program inside the test environment and checks what it did (used by ctest for the
# examples):
#
#   check-output.sh EXPECTED_EXIT PATTERN... -- PROGRAM [ARGS...]
#
# Each PATTERN (an extended regular expression) must match a line of the program's output
# (stdout and stderr together). An argument @NAME stands for $DTUN_TESTENV_DIR/NAME. The
# output must also never hold a password of the environment (env.txt), nor the Base64 of
# user:password that a Proxy-Authorization header carries, nor 8 characters in a row of one.
set -eu

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

[ $# -ge 3 ] || fail "usage: check-output.sh EXPECTED_EXIT PATTERN... -- PROGRAM [ARGS...]"
: "${DTUN_TESTENV_DIR:?run this inside dtun-testenv run}"
expected=$1
shift
patterns_file=$(mktemp)
output_file=$(mktemp)
trap 'rm -f "$patterns_file" "$output_file"' EXIT
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    printf '%s\n' "$1" >>"$patterns_file"
    shift
done
[ $# -ge 2 ] || fail "no program after --"
shift
program=$1
shift

# Replace @NAME arguments in place, keeping the others as they are (POSIX sh has no arrays:
# append the new list after the old one, then drop the old one).
count=$#
for arg in "$@"; do
    case $arg in
        @*) arg=$DTUN_TESTENV_DIR/${arg#@} ;;
    esac
    set -- "$@" "$arg"
done
shift "$count"

echo "running: $program $*"
status=0
"$program" "$@" >"$output_file" 2>&1 || status=$?
cat "$output_file"
echo "exit status: $status"

[ "$status" -eq "$expected" ] || fail "exit status $status, expected $expected"
while IFS= read -r pattern; do
    grep -Eq -- "$pattern" "$output_file" || fail "no output line matches: $pattern"
done <"$patterns_file"

# Every *_PASSWORD of env.txt, and the Base64 of every *_USER:*_PASSWORD pair (the failure
# message names neither: the log should not repeat them either). The rule is leak_in()'s in
# tests/support/mod.rs (and secrets_find()'s in support.c): the whole secret, or any run of 8
# of its characters (a truncated secret is still a leak); one of 8 characters or fewer only
# whole. The passwords of env.txt and their Base64 are ASCII, so awk's characters are theirs.
env_txt=$DTUN_TESTENV_DIR/env.txt
passwords_file=$(mktemp)
users_file=$(mktemp)
secrets_file=$(mktemp)
pieces_file=$(mktemp)
trap 'rm -f "$patterns_file" "$output_file" "$passwords_file" "$users_file" \
    "$secrets_file" "$pieces_file"' EXIT
sed -n 's/^[A-Z_]*_PASSWORD=//p' "$env_txt" >"$passwords_file"
sed -n 's/^[A-Z_]*_USER=//p' "$env_txt" >"$users_file"
[ -s "$passwords_file" ] || fail "env.txt has no password"
while IFS= read -r password; do
    printf '%s\n' "$password"
    while IFS= read -r user; do
        printf '%s:%s' "$user" "$password" | base64 | tr -d '\n'
        echo
    done <"$users_file"
done <"$passwords_file" >"$secrets_file"
awk '{
    print
    if (length($0) > 8) {
        for (i = 1; i + 8 <= length($0) + 1; i++) {
            print substr($0, i, 8)
        }
    }
}' "$secrets_file" >"$pieces_file"
if grep -Fq -f "$pieces_file" -- "$output_file"; then
    fail "the output holds a password from env.txt, the Base64 of a user:password pair from" \
        "env.txt, or 8 characters in a row of one of them"
fi
echo "PASS"
