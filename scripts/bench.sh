#!/usr/bin/env bash
# The benchmarks of issue 6: dragent-tunnel against libcurl on the same path, in the same run.
#
#   scripts/bench.sh [--quick] [--rounds N] [--only LIST] [--bare-opens] [--quiet-wait S]
#   scripts/bench.sh --callgrind [--quick]
#
# Builds the library and dtun-testenv (release), compiles benches/bench_dtun.c and
# benches/bench_curl.c into build/bench/, starts the test environment with real squid
# (dtun-testenv run --dir build/bench/env --real-proxies), and runs each measurement for
# dragent-tunnel and for libcurl back to back, N rounds (the order of the two flips every
# round), through squid's https_port with Basic auth to the TLS echo collector (the
# environment's squid_example3.yaml). Then prints issue 6's targets: the median of the rounds
# for each, the ratio dtun/curl (median of the per-round ratios) and MET or NOT MET.
#
#   --quick       a smoke run: 32 MiB echoed, 50 opens, one round (full: 1 GiB, 200 opens,
#                 100 idle tunnels, 5 rounds)
#   --rounds N    rounds of every measurement (default 5)
#   --only LIST   comma-separated subset of: throughput,open-first,open-reconnect,memory
#   --bare-opens  open tests without the 64-byte echo between open and close (then no TLS 1.3
#                 session ticket is ever read on the collector hop, so it cannot resume)
#   --quiet-wait S  before each measurement, wait up to S seconds (default 10, at most 6 S in
#                 all; 0: never) for the rest of the machine to use less than a third of a
#                 core; the table shows how busy it was during each measurement anyway
#   --callgrind   count the client's user-space instructions in the measured regions under
#                 valgrind instead (deterministic, blind to the kernel and to other load;
#                 16 MiB echoed and 20 opens, --quick: 4 MiB and 5 opens)
#
# Files: build/bench/raw.txt (every figure of every round: "ROUND BACKEND METRIC VALUE"),
# build/bench/summary.txt (medians: "BACKEND METRIC VALUE"; BACKEND "ratio" holds the
# dtun/curl ratios), build/bench/callgrind/ (--callgrind: the callgrind.out files, for
# callgrind_annotate). benches/README.md explains every figure. Needs squid-openssl,
# tinyproxy and libcurl4-openssl-dev (as scripts/test.sh installs them; valgrind for
# --callgrind), cargo and a C compiler. Exits 0 once the table is printed, whatever the
# figures; non-zero only when the benchmarks could not run.
set -euo pipefail
cd "$(dirname "$0")/.."

out=build/bench
env_dir=$out/env
config=squid_example3.yaml

die() {
    printf 'bench: %s\n' "$*" >&2
    exit 1
}

# ------------------------------------------------------------------ inside the environment
# Run by dtun-testenv (the parent process, which also hosts the echo collector) with
# DTUN_TESTENV_* set: "bench.sh --in-env RAW ROUNDS MIB OPENS TUNNELS MODES QUIET_WAIT
# [CALLGRIND_DIR]".
if [ "${1:-}" = "--in-env" ]; then
    raw=$2 rounds=$3 mib=$4 opens=$5 tunnels=$6 modes=$7 quiet_wait=$8 cg_dir=${9:-}
    BENCH_ECHO_PID=$PPID
    BENCH_SQUID_PID=$(cat "$DTUN_TESTENV_SQUID_DIR/squid.pid")
    BENCH_CONFIG=$DTUN_TESTENV_DIR/$config
    export BENCH_ECHO_PID BENCH_SQUID_PID BENCH_CONFIG
    [ -r "$BENCH_CONFIG" ] || die "$BENCH_CONFIG is missing"
    # Both programs must take the same path: the yaml's ports are the ones curl is given.
    yaml_port() { sed -n "s/^ *$1: *\([0-9]*\)\$/\1/p" "$BENCH_CONFIG"; }
    [ "$(yaml_port proxy_port)" = "$DTUN_TESTENV_SQUID_TLS_AUTH_PORT" ] ||
        die "$config does not use squid's TLS+auth port"
    [ "$(yaml_port collector_port)" = "$DTUN_TESTENV_ECHO_TLS_PORT" ] ||
        die "$config does not use the TLS echo collector"
    : >"$raw"
    # Busy CPU ticks of the whole machine (/proc/stat: user nice system irq softirq).
    busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
    # Waits (at most $quiet_wait seconds, and 6 times that in all) until the rest of the
    # machine used less than a third of a core over the last second: nothing of ours runs
    # between measurements.
    quiet_budget=$((quiet_wait * 6))
    wait_quiet() {
        local waited=0 a b hz
        hz=$(getconf CLK_TCK)
        while [ "$quiet_budget" -gt 0 ]; do
            a=$(busy_ticks)
            sleep 1
            b=$(busy_ticks)
            [ $(((b - a) * 3)) -ge "$hz" ] || return 0
            waited=$((waited + 1)) quiet_budget=$((quiet_budget - 1))
            if [ "$waited" -ge "$quiet_wait" ] || [ "$quiet_budget" -le 0 ]; then
                printf 'bench: the machine is still busy (%s%% of a core) after %ss: measuring anyway\n' \
                    $(((b - a) * 100 / hz)) "$waited" >&2
                return 0
            fi
        done
    }
    # One measurement of one backend in a fresh process; its figures go to $raw.
    measure() { # ROUND BACKEND MODE COUNT [syscalls]
        local round=$1 backend=$2 mode=$3 count=$4 only=${5:-} program=$out/bench_dtun lines
        local -a run=(env)
        [ -z "$only" ] || run+=(BENCH_SYSCALLS=1)
        [ "$backend" = dtun ] || program=$out/bench_curl
        if [ -n "$cg_dir" ]; then
            run+=(valgrind -q --tool=callgrind --toggle-collect='measured_*'
                --callgrind-out-file="$cg_dir/$backend.$mode.out")
        fi
        [ -n "$cg_dir" ] || [ -n "$only" ] || wait_quiet
        printf 'bench: %s %s: %s %s %s\n' "${only:-round}" "$round" "$backend" "$mode" "$count" >&2
        lines=$("${run[@]}" "$program" "$mode" "$count") || die "$backend $mode failed (see above)"
        # The counting pass keeps only its counts: the tracepoint slows the timed figures.
        [ -z "$only" ] || lines=$(printf '%s\n' "$lines" | grep -E '_syscalls_per_' || true)
        [ -z "$lines" ] || printf '%s\n' "$lines" | sed "s/^/$round /" >>"$raw"
    }
    for round in $(seq "$rounds"); do
        if [ $((round % 2)) -eq 1 ]; then order="dtun curl"; else order="curl dtun"; fi
        for mode in ${modes//,/ }; do
            case $mode in
            throughput) count=$mib ;;
            memory) count=$tunnels ;;
            *) count=$opens ;;
            esac
            for backend in $order; do
                measure "$round" "$backend" "$mode" "$count"
            done
        done
        # System calls per block and per open: an untimed pass of each, smaller (the count
        # depends on timing: how often a read finds nothing yet).
        [ -z "$cg_dir" ] || continue
        for mode in ${modes//,/ }; do
            case $mode in
            throughput) count=$((mib < 64 ? mib : 64)) ;;
            open-*) count=$((opens < 50 ? opens : 50)) ;;
            *) continue ;;
            esac
            for backend in $order; do
                measure "$round" "$backend" "$mode" "$count" syscalls
            done
        done
    done
    exit 0
fi

# ------------------------------------------------------------------ options
all_modes=throughput,open-first,open-reconnect,memory
rounds=5 mib=1024 opens=200 tunnels=100 modes=$all_modes quick= callgrind= rounds_set= quiet_wait=10
while [ $# -gt 0 ]; do
    case $1 in
    --quick) quick=1 ;;
    --rounds)
        [ $# -ge 2 ] && [ "$2" -ge 1 ] 2>/dev/null || die "--rounds needs a number >= 1"
        rounds=$2 rounds_set=1
        shift
        ;;
    --only)
        [ $# -ge 2 ] || die "--only needs a list"
        for m in ${2//,/ }; do
            case ",$all_modes," in *",$m,"*) ;; *) die "--only: unknown measurement $m (one of $all_modes)" ;; esac
        done
        modes=$2
        shift
        ;;
    --bare-opens) export BENCH_OPEN_ECHO=0 ;;
    --quiet-wait)
        [ $# -ge 2 ] && [ "$2" -ge 0 ] 2>/dev/null || die "--quiet-wait needs a number of seconds"
        quiet_wait=$2
        shift
        ;;
    --callgrind) callgrind=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown option $1 (try --help)" ;;
    esac
    shift
done
if [ -n "$callgrind" ]; then
    # Instruction counts do not vary from round to round; memory is not measured.
    mib=16 opens=20 rounds=1
    [ -z "$quick" ] || mib=4 opens=5
    [ "$modes" != "$all_modes" ] || modes=throughput,open-first,open-reconnect
    modes=$(tr , '\n' <<<"$modes" | grep -vx memory | paste -sd, -) ||
        die "--callgrind does not measure memory"
elif [ -n "$quick" ]; then
    mib=32 opens=50
    [ -n "$rounds_set" ] || rounds=1
fi

# ------------------------------------------------------------------ build
for tool in cargo cc; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
command -v squid >/dev/null || die "squid is not installed (Debian: apt-get install -y squid-openssl)"
command -v tinyproxy >/dev/null || die "tinyproxy is not installed (Debian: apt-get install -y tinyproxy)"
[ -z "$callgrind" ] || command -v valgrind >/dev/null || die "valgrind is not installed"
if command -v pkg-config >/dev/null && pkg-config --exists libcurl; then
    curl_cflags=$(pkg-config --cflags libcurl) curl_libs=$(pkg-config --libs libcurl)
elif command -v curl-config >/dev/null; then
    curl_cflags=$(curl-config --cflags) curl_libs=$(curl-config --libs)
else
    die "libcurl's development files are missing (Debian: apt-get install -y libcurl4-openssl-dev)"
fi

printf 'bench: cargo build --release -p dragent-tunnel -p dtun-testenv\n' >&2
cargo build --release --locked -p dragent-tunnel -p dtun-testenv >&2
target=${CARGO_TARGET_DIR:-target}/release
[ -f "$target/libdragent_tunnel.so" ] || die "$target/libdragent_tunnel.so was not built"
lib_dir=$(cd "$target" && pwd)

mkdir -p "$out"
cflags=(-O2 -g -std=c11 -Wall -Wextra -Werror)
printf 'bench: compiling %s/bench_dtun and %s/bench_curl\n' "$out" "$out" >&2
cc "${cflags[@]}" -Iinclude -o "$out/bench_dtun" benches/bench_dtun.c benches/bench_common.c \
    -L"$lib_dir" -ldragent_tunnel -Wl,-rpath,"$lib_dir"
# shellcheck disable=SC2086 # pkg-config output is a list of flags, split on purpose
cc "${cflags[@]}" $curl_cflags -o "$out/bench_curl" benches/bench_curl.c benches/bench_common.c \
    $curl_libs

# ------------------------------------------------------------------ run
raw=$out/raw.txt summary=$out/summary.txt cg_dir=
if [ -n "$callgrind" ]; then
    cg_dir=$out/callgrind raw=$out/callgrind/raw.txt summary=$out/callgrind/summary.txt
    rm -rf "$cg_dir"
    mkdir -p "$cg_dir"
fi
rm -rf "$env_dir"
printf 'bench: %s round(s) of %s: %s MiB echoed, %s opens, %s idle tunnels%s\n' "$rounds" \
    "$modes" "$mib" "$opens" "$tunnels" "${callgrind:+, under callgrind}" >&2
"$target/dtun-testenv" run --dir "$env_dir" --real-proxies -- \
    "$0" --in-env "$raw" "$rounds" "$mib" "$opens" "$tunnels" "$modes" "$quiet_wait" "$cg_dir" ||
    die "the benchmarks did not run to the end"

curl_version=$(pkg-config --modversion libcurl 2>/dev/null || curl-config --version 2>/dev/null | sed 's/^libcurl //')
lib_id=$(sha256sum "$lib_dir/libdragent_tunnel.so" | cut -c1-12)
if rev=$(git rev-parse --short HEAD 2>/dev/null); then
    [ -z "$(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ] || rev="$rev+local changes"
    lib_id="$lib_id, built from $rev"
fi
header() {
    printf '\ndragent-tunnel (libdragent_tunnel.so %s)\n' "$lib_id"
    printf 'vs libcurl %s, same path: TLS to squid https_port with Basic auth,\n' \
        "${curl_version:-?}"
    printf 'TLS to the echo collector inside the tunnel (TLS in TLS); %s CPUs shared by client, squid and echo\n' \
        "$(getconf _NPROCESSORS_ONLN)"
}

# ------------------------------------------------------------------ callgrind table
if [ -n "$callgrind" ]; then
    : >"$summary"
    for f in "$cg_dir"/*.out; do
        name=${f##*/}
        backend=${name%%.*} mode=${name#*.}
        mode=${mode%.out}
        ir=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$f")
        case $mode in
        throughput) echo "$backend callgrind_ir_per_gib $(awk -v i="$ir" -v m="$mib" 'BEGIN { printf "%.0f", i * 1024 / m }')" ;;
        *) echo "$backend callgrind_${mode//-/_}_ir_per_open $(awk -v i="$ir" -v n="$opens" 'BEGIN { printf "%.0f", i / n }')" ;;
        esac
    done >>"$summary"
    header
    printf 'client user-space instructions counted by callgrind in the measured regions: %s MiB echoed, %s opens\n\n' "$mib" "$opens"
    awk '
        { v[$1, $2] = $3 }
        function row(label, m, unit, div,   r) {
            if (!(("dtun", m) in v) || !(("curl", m) in v)) return
            r = v["curl", m] ? sprintf("%.2f", v["dtun", m] / v["curl", m]) : "-"
            printf "%-36s %12.2f %12.2f %10s\n", label " (" unit ")", v["dtun", m] / div, v["curl", m] / div, r
        }
        END {
            printf "%-36s %12s %12s %10s\n", "instructions", "dtun", "curl", "dtun/curl"
            row("per GiB echoed", "callgrind_ir_per_gib", "G", 1e9)
            row("per first connect", "callgrind_open_first_ir_per_open", "M", 1e6)
            row("per reconnect", "callgrind_open_reconnect_ir_per_open", "M", 1e6)
        }' "$summary"
    printf '\nThe crypto code paths under valgrind are not the native ones (it hides some CPU\n'
    printf 'features); compare dtun with itself before and after a change. Files: %s\n' "$cg_dir"
    exit 0
fi

# ------------------------------------------------------------------ medians and the table
# Per backend and metric: the median over rounds of numeric values (the first round's value
# for words) and the spread, (max - min) / 2 / median in percent. Backend "ratio": for each
# metric both measured, the median over rounds of dtun / curl of the same round.
awk '
    function median(arr, m,   a, b, t) {
        for (a = 1; a <= m; a++) for (b = a + 1; b <= m; b++) if (arr[b] < arr[a]) { t = arr[a]; arr[a] = arr[b]; arr[b] = t }
        return (m % 2) ? arr[(m + 1) / 2] : (arr[m / 2] + arr[m / 2 + 1]) / 2
    }
    {
        key = $2 " " $3; n[key]++; v[key, n[key]] = $4
        if (!(key in first)) { first[key] = $4; order[++k] = key }
        if ($2 == "dtun" || $2 == "curl") { per[$1, $2, $3] = $4; metric[$3] = 1; round[$1] = 1 }
    }
    END {
        for (i = 1; i <= k; i++) {
            key = order[i]; m = n[key]
            if (first[key] !~ /^-?[0-9.]+$/) { print key, first[key], "-"; continue }
            delete x
            for (a = 1; a <= m; a++) x[a] = v[key, a] + 0
            med = median(x, m)
            spread = (med != 0) ? (x[m] - x[1]) / 2 / med * 100 : 0
            printf "%s %.6g %.1f\n", key, med, (spread < 0 ? -spread : spread)
        }
        for (mt in metric) {
            c = 0; delete x
            for (r in round)
                if (((r, "dtun", mt) in per) && ((r, "curl", mt) in per) && per[r, "curl", mt] != 0 && per[r, "dtun", mt] ~ /^-?[0-9.]+$/)
                    x[++c] = per[r, "dtun", mt] / per[r, "curl", mt]
            if (c > 0) {
                list = ""
                for (a = 1; a <= c; a++) list = list (a > 1 ? ";" : "") x[a]
                med = median(x, c)
                spread = (med != 0) ? (x[c] - x[1]) / 2 / med * 100 : 0
                printf "ratio %s %.6g %.1f\n", mt, med, spread
                printf "ratios %s %s -\n", mt, list
            }
        }
    }' "$raw" >"$summary.tmp"
grep -v '^ratios ' "$summary.tmp" | cut -d' ' -f1-3 >"$summary"

header
awk -v rounds="$rounds" -v mib="$mib" -v opens="$opens" -v tunnels="$tunnels" '
    { val[$1, $2] = $3; spr[$1, $2] = $4 }
    function has(b, m) { return ((b, m) in val) }
    function num(x) { return (x >= 1000 || x <= -1000) ? sprintf("%.0f", x) : sprintf("%.3g", x) }
    function fmt(b, m,   s) {
        if (!has(b, m)) return "-"
        s = num(val[b, m])
        if (rounds > 1 && spr[b, m] != "-") s = s sprintf(" ±%.0f%%", spr[b, m])
        return s
    }
    function line(label, d, c, ratio, goal, verdict) {
        printf "%-42s %14s %14s %11s %7s  %s\n", label, d, c, ratio, goal, verdict
    }
    function ratio(m) {
        return has("ratio", m) ? sprintf("%.2f", val["ratio", m]) : "-"
    }
    # A dtun/curl target: the median ratio against the goal, and in how many rounds the
    # ratio of that round met it.
    function target(label, m, goal,   r, n, k, i, met, verdict) {
        r = ratio(m)
        if (!has("dtun", m) && !has("curl", m)) return # not measured this time (--only)
        if (r == "-") { line(label, fmt("dtun", m), fmt("curl", m), r, "<= " goal, "NOT MEASURED"); return }
        verdict = r + 0 <= goal ? "MET" : "NOT MET"
        if (rounds > 1 && (("ratios", m) in val)) {
            n = split(val["ratios", m], per, ";"); met = 0
            for (i = 1; i <= n; i++) if (per[i] + 0 <= goal) met++
            verdict = verdict sprintf(" (%d of %d rounds)", met, n)
            if (spr["ratio", m] != "-") r = r sprintf(" ±%.0f%%", spr["ratio", m])
        }
        line(label, fmt("dtun", m), fmt("curl", m), r, "<= " goal, verdict)
    }
    function info(label, m) {
        if (has("dtun", m) || has("curl", m)) line(label, fmt("dtun", m), fmt("curl", m), ratio(m), "", "")
    }
    function busy(label, p) {
        if (has("dtun", p "_other_cpu_pct") || has("curl", p "_other_cpu_pct"))
            line("  " label, fmt("dtun", p "_other_cpu_pct"), fmt("curl", p "_other_cpu_pct"), "", "", "")
        if (val["dtun", p "_other_cpu_pct"] > 20 || val["curl", p "_other_cpu_pct"] > 20) noisy = 1
    }
    END {
        printf "%s MiB echoed in 64 KiB blocks, %s opens, %s idle tunnels; median of %s round(s)%s\n\n", mib, opens, tunnels, rounds, (rounds > 1 ? " ± half their spread" : "")
        line("issue 6 targets", "dtun", "curl", "dtun/curl", "goal", "verdict")
        line("---------------", "----", "----", "---------", "----", "-------")
        target("client CPU per GiB echoed (s)", "throughput_cpu_s_per_gib", 0.7)
        target("client CPU per first connect (ms)", "open_first_cpu_ms", 0.7)
        target("client CPU per reconnect (ms)", "open_reconnect_cpu_ms", 0.7)
        if (has("dtun", "open_reconnect_cpu_ms") && has("dtun", "open_first_cpu_ms")) {
            r = val["dtun", "open_reconnect_cpu_ms"] / val["dtun", "open_first_cpu_ms"]
            line("dtun CPU: reconnect / first connect", sprintf("%.2f", r), "", "", "< 1", r < 1 ? "MET" : "NOT MET")
        }
        split("proxy collector", hops, " ")
        for (h = 1; h <= 2; h++) {
            m = "open_reconnect_resumed_" hops[h] "_frac"
            if (has("dtun", m))
                line("reconnects resuming TLS, " hops[h] " hop", fmt("dtun", m), fmt("curl", m), "", "1.00", val["dtun", m] >= 1 ? "MET" : "NOT MET")
        }
        target("RSS per idle tunnel (KiB)", "mem_rss_per_idle_tunnel_kib", 1.0)
        if (has("dtun", "library_threads_peak"))
            line("library threads (peak, " tunnels " tunnels)", fmt("dtun", "library_threads_peak"), fmt("curl", "library_threads_peak"), "", "<= 2", val["dtun", "library_threads_peak"] <= 2 ? "MET" : "NOT MET")
        m = "throughput_echo_cpu_pct"
        if (has("dtun", m) && has("curl", m))
            line("echo collector CPU, throughput (%)", fmt("dtun", m), fmt("curl", m), "", "< 100", (val["dtun", m] < 100 && val["curl", m] < 100) ? "MET: not the bottleneck" : "NOT MET: bottleneck")

        printf "\n"
        line("context", "dtun", "curl", "dtun/curl", "", "")
        line("-------", "----", "----", "---------", "", "")
        info("throughput (MB/s)", "throughput_mb_per_s")
        info("  client user CPU per GiB (s)", "throughput_user_s_per_gib")
        info("  client system CPU per GiB (s)", "throughput_sys_s_per_gib")
        info("  client CPU (% of a core)", "throughput_client_cpu_pct")
        info("  squid CPU (% of a core)", "throughput_squid_cpu_pct")
        info("  voluntary context switches per MiB", "throughput_vcsw_per_mib")
        info("  recv calls per 64 KiB block", "throughput_recv_calls_per_block")
        info("  system calls per 64 KiB block", "throughput_syscalls_per_block")
        info("first connect: wall per open, mean (ms)", "open_first_wall_ms")
        info("  wall p50 (ms)", "open_first_wall_p50_ms")
        info("  wall p90 (ms)", "open_first_wall_p90_ms")
        info("  client CPU making the config/handle (ms)", "open_first_config_cpu_ms")
        info("  system calls per open", "open_first_syscalls_per_open")
        info("  squid CPU per open (ms)", "open_first_squid_cpu_ms")
        info("  echo collector CPU per open (ms)", "open_first_echo_cpu_ms")
        info("  opens resuming TLS, proxy hop", "open_first_resumed_proxy_frac")
        info("  opens resuming TLS, collector hop", "open_first_resumed_collector_frac")
        info("reconnect: wall per open, mean (ms)", "open_reconnect_wall_ms")
        info("  wall p50 (ms)", "open_reconnect_wall_p50_ms")
        info("  wall p90 (ms)", "open_reconnect_wall_p90_ms")
        info("  system calls per open", "open_reconnect_syscalls_per_open")
        info("  reconnects offering a session, proxy", "open_reconnect_offered_proxy_frac")
        info("  reconnects offering a session, collector", "open_reconnect_offered_collector_frac")
        info("  squid CPU per open (ms)", "open_reconnect_squid_cpu_ms")
        info("  echo collector CPU per open (ms)", "open_reconnect_echo_cpu_ms")
        if (has("dtun", "open_first_echo_bytes"))
            line("bytes echoed per open before close", val["dtun", "open_first_echo_bytes"], val["curl", "open_first_echo_bytes"], "", "", "")
        info("RSS before any tunnel (KiB)", "mem_rss_before_kib")
        info("RSS with 1 tunnel (KiB)", "mem_rss_1_kib")
        info("RSS with " tunnels " tunnels (KiB)", "mem_rss_n_kib")
        info("threads with " tunnels " tunnels", "threads_n")
        if (has("dtun", "check_proxy_tls_version")) {
            line("TLS on proxy hop / collector hop", val["dtun", "check_proxy_tls_version"] "/" val["dtun", "check_collector_tls_version"], val["curl", "check_proxy_tls_version"] "/" val["curl", "check_collector_tls_version"], "", "", "")
            line("collector hop cipher suite", val["dtun", "check_collector_cipher"], val["curl", "check_collector_cipher"], "", "", "")
        }
        line("other load on the machine (% of a core)", "", "", "", "", "")
        busy("during throughput", "throughput")
        busy("during first connects", "open_first")
        busy("during reconnects", "open_reconnect")
        if (noisy) printf "\nWARNING: other processes used more than 20%% of a core during some measurements:\nthose figures are noisy; rerun on an idle machine or with more --rounds.\n"
    }' "$summary.tmp"
rm -f "$summary.tmp"
printf '\nraw figures: %s; medians and ratios: %s\n' "$raw" "$summary"
