#!/bin/sh
# Runs a command inside a fresh test environment (used by ctest for every test that needs
# proxies and collectors):
#
#   in-testenv.sh TESTENV DIR [TESTENV_OPTION...] -- COMMAND [ARGS...]
#
# TESTENV is the dtun-testenv binary, DIR the environment folder, TESTENV_OPTIONs go to
# `dtun-testenv run` (--real-proxies). DIR is emptied first: scenario files left by an earlier
# run (real-proxy ones, say) would otherwise be tested against servers that no longer exist.
set -eu
if [ $# -lt 4 ]; then
    echo "usage: in-testenv.sh TESTENV DIR [TESTENV_OPTION...] -- COMMAND [ARGS...]" >&2
    exit 2
fi
testenv=$1
dir=$2
shift 2
rm -rf -- "$dir"
# exec: ctest's timeout signal then reaches dtun-testenv, which stops the command and servers.
exec "$testenv" run --dir "$dir" "$@"
