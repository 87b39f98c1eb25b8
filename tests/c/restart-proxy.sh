#!/bin/sh
# agent_client --reconnect against a proxy that is restarted (issue 13), the restart driven by
# what the program prints, never by a timer:
#
#   restart-proxy.sh AGENT_CLIENT
#
# Runs inside `dtun-testenv run`, whose restart_proxy.yaml goes through a proxy that the FIFO
# $DTUN_TESTENV_RESTART_PROXY_CONTROL stops and starts on the same port (the state file
# $DTUN_TESTENV_RESTART_PROXY_STATE says when it happened; testenv/src/bin/dtun-testenv.rs):
#
#   1. with the proxy up, agent_client delivers 2 messages through it;
#   2. the proxy is stopped: its port refuses connections;
#   3. agent_client --reconnect 30 is to deliver 5 messages; once it has printed its second
#      "reconnecting after DTUN_ERR_CONNECT" line (two refusals in a row, the delay chosen
#      after each), the proxy is started again on the same port;
#   4. agent_client must then open the tunnel, deliver all 5 and exit 0, and no tunnel may
#      have opened while the proxy was down.
#
# Prints what agent_client printed and a line for each step; check-output.sh checks the lines
# and that no secret is among them. Exit status 0 when every step went as above.
set -eu

fail() {
    echo "restart-proxy: FAIL: $*" >&2
    exit 1
}

[ $# -eq 1 ] || fail "usage: restart-proxy.sh AGENT_CLIENT"
agent=$1
: "${DTUN_TESTENV_DIR:?run this inside dtun-testenv run}"
control=${DTUN_TESTENV_RESTART_PROXY_CONTROL:?the environment has no restartable proxy}
state_file=${DTUN_TESTENV_RESTART_PROXY_STATE:?the environment has no restartable proxy}
port=${DTUN_TESTENV_RESTART_PROXY_PORT:?the environment has no restartable proxy}
yaml=$DTUN_TESTENV_DIR/restart_proxy.yaml

out=$(mktemp)
pid=
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || :; fi; rm -f "$out"' EXIT

# wait_for SECONDS COMMAND...: runs COMMAND every 50 ms until it succeeds; fails after SECONDS.
wait_for() {
    tries=$(($1 * 20))
    shift
    while ! "$@"; do
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || return 1
        sleep 0.05
    done
}

state_is() {
    [ "$(cat "$state_file" 2>/dev/null)" = "$1" ]
}

# proxy open|close: asks the environment, then waits until the state file says it is done
# (the port refuses, or accepts, connections). The state counts the commands done.
done_commands=0
proxy() {
    done_commands=$((done_commands + 1))
    case $1 in
        open) want="$done_commands open" ;;
        close) want="$done_commands closed" ;;
    esac
    echo "$1" >"$control"
    wait_for 30 state_is "$want" ||
        fail "the proxy did not $1 within 30 s: state '$(cat "$state_file" 2>/dev/null)'"
    echo "restart-proxy: proxy port $port: $1 ($want)"
}

state_is "0 open" || fail "the restartable proxy is not in its first state: '$(cat "$state_file")'"

echo "restart-proxy: 1. the proxy is up: agent_client delivers 2 messages"
status=0
"$agent" "$yaml" 2 >"$out" 2>&1 || status=$?
cat "$out"
[ "$status" -eq 0 ] || fail "agent_client through the running proxy exited with $status"
grep -q '^all 2 messages acknowledged$' "$out" || fail "agent_client did not deliver 2 messages"

echo "restart-proxy: 2. the proxy is stopped"
proxy close

echo "restart-proxy: 3. agent_client --reconnect while it is down"
"$agent" --reconnect 30 "$yaml" 5 >"$out" 2>&1 &
pid=$!
second_refusal() {
    grep -Eq '^reconnecting after DTUN_ERR_CONNECT: waiting [0-9]+ ms \(failure 2 of at most 30\)$' "$out"
}
refused_twice_or_ended() {
    second_refusal || ! kill -0 "$pid" 2>/dev/null
}
wait_for 60 refused_twice_or_ended || {
    cat "$out"
    fail "agent_client printed no second 'reconnecting after DTUN_ERR_CONNECT' line in 60 s"
}
second_refusal || {
    cat "$out"
    fail "agent_client ended before it was refused twice"
}
# Everything printed so far was printed while the proxy was down.
lines_while_down=$(wc -l <"$out")
echo "restart-proxy: refused twice ($lines_while_down lines so far): starting the proxy again"
proxy open

status=0
wait "$pid" || status=$?
pid=
cat "$out"
echo "restart-proxy: agent_client --reconnect exited with $status"
[ "$status" -eq 0 ] || fail "agent_client --reconnect did not recover"
if head -n "$lines_while_down" "$out" | grep -q '^tunnel open'; then
    fail "a tunnel opened while the proxy was down"
fi
tail -n "+$((lines_while_down + 1))" "$out" | grep -q '^tunnel open: ' ||
    fail "no tunnel opened after the proxy came back"
grep -q '^all 5 messages acknowledged$' "$out" || fail "not every message was acknowledged"
echo "restart-proxy: PASS: the loop waited out the stopped proxy and delivered through it"
