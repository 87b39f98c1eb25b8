#!/usr/bin/env bash
# The benchmarks of issues 6 and 15: dragent-tunnel against libcurl on the same path, in the
# same run, with the machine's crypto floor.
#
#   scripts/bench.sh [--quick] [--rounds N] [--only LIST] [--bare-opens] [--quiet-wait S]
#   scripts/bench.sh --callgrind [--quick]
#
# Builds the library and dtun-testenv (release) and benches/ring_floor, compiles
# benches/bench_dtun.c and benches/bench_curl.c into build/bench/, starts the test environment
# with real squid (dtun-testenv run --dir build/bench/env --real-proxies --no-ntlm), and runs each
# measurement for dragent-tunnel and for libcurl back to back, N rounds (the order of the two
# flips every round), through squid's https_port with Basic auth to a TLS collector inside
# the tunnel: the echo collector (the environment's squid_example3.yaml) for throughput and
# opens, the framed collector that acknowledges every message for the agent's messages (the
# same yaml with the framed collector's port, written to build/bench/). Each round starts
# with the crypto floor: ring's AEAD rate (benches/ring_floor) and openssl speed's. Then
# prints issue 15's targets, each MET or NOT MET: the median of the rounds meets the goal,
# and so does the figure of at least 4 rounds in 5 (all but one in five), each computed
# from raw.txt round by round.
#
#   --quick       a smoke run: 32 MiB echoed, 50 opens, a tenth of the messages, one round
#                 (full: 1 GiB, 200 opens, 100 idle tunnels, messages 256 B x 20000,
#                 4 KiB x 10000, 64 KiB x 2000, 1 MiB x 200 each way, 5 rounds)
#   --rounds N    rounds of every measurement (default 5)
#   --only LIST   comma-separated subset of:
#                 throughput,open-first,open-reconnect,memory,messages (the floor always runs)
#   --bare-opens  open tests without the 64-byte echo between open and close (then no TLS 1.3
#                 session ticket is ever read on the collector hop, so it cannot resume)
#   --quiet-wait S  before each measurement, wait up to S seconds (default 10, at most 6 S in
#                 all; 0: never) for the rest of the machine to use less than a third of a
#                 core; the table shows how busy it was during each measurement anyway
#   --curl-tls13-ciphers LIST  an experiment: the TLS 1.3 suites libcurl offers on both hops
#                 (OpenSSL names, e.g. TLS_AES_128_GCM_SHA256); the library has no such key,
#                 so dtun keeps its default (AES-256-GCM first)
#   --callgrind   count the client's user-space instructions in the measured regions under
#                 valgrind instead (deterministic, blind to the kernel and to other load;
#                 16 MiB echoed and 20 opens, --quick: 4 MiB and 5 opens; no messages, no
#                 memory, no floor)
#
# Files: build/bench/raw.txt (every figure of every round: "ROUND BACKEND METRIC VALUE";
# backends dtun, curl, ring, openssl, and floor: the floor derived from that round's rates),
# build/bench/summary.txt (medians: "BACKEND METRIC VALUE"; BACKEND "ratio" holds the
# dtun/curl ratios), build/bench/callgrind/ (--callgrind: the callgrind.out files, for
# callgrind_annotate). benches/README.md explains every figure. Needs squid-openssl,
# tinyproxy and libcurl4-openssl-dev (as scripts/test.sh installs them; valgrind for
# --callgrind; openssl for its half of the floor), cargo and a C compiler. Exits 0 once the
# table is printed, whatever the figures; non-zero only when the benchmarks could not run.
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
    raw=$2 rounds=$3 mib=$4 opens=$5 tunnels=$6 modes=$7 quiet_wait=$8 msg_counts=$9
    floor_s=${10} cg_dir=${11:-}
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
    # The messages mode needs a collector that acknowledges each framed message: the
    # environment's FramedCollector (FRAMED_TLS_PORT, which squid lets CONNECT reach). The
    # environment writes no squid yaml for it (framed.yaml goes through the Rust test proxy),
    # so this is squid_example3.yaml with the framed collector's port: the same path
    # otherwise (https_port, Basic auth, verified TLS on both hops, collector cert for
    # localhost).
    framed_config=$out/squid_example3_framed.yaml
    if [[ ",$modes," = *",messages,"* ]]; then
        [ -n "${DTUN_TESTENV_FRAMED_TLS_PORT:-}" ] || die "env.txt has no FRAMED_TLS_PORT"
        [ "$(grep -c '^ *collector_port:' "$BENCH_CONFIG")" = 1 ] ||
            die "$config: cannot find its one collector_port line"
        sed "s/^\( *collector_port:\) *[0-9]*\$/\1 $DTUN_TESTENV_FRAMED_TLS_PORT/" \
            "$BENCH_CONFIG" >"$framed_config"
        [ "$(BENCH_CONFIG=$framed_config yaml_port collector_port)" = "$DTUN_TESTENV_FRAMED_TLS_PORT" ] ||
            die "could not write $framed_config"
    fi
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
    # One measurement of one backend in a fresh process; its figures go to $raw. COUNT is
    # one word, or "BYTES WINDOW N" for messages.
    measure() { # ROUND BACKEND MODE COUNT [syscalls]
        local round=$1 backend=$2 mode=$3 count=$4 only=${5:-} program=$out/bench_dtun lines
        local -a run=(env) args
        read -r -a args <<<"$count"
        [ -z "$only" ] || run+=(BENCH_SYSCALLS=1)
        [ "$mode" != messages ] ||
            run+=(BENCH_CONFIG="$framed_config" BENCH_COLLECTOR_PORT="$DTUN_TESTENV_FRAMED_TLS_PORT")
        [ "$backend" = dtun ] || program=$out/bench_curl
        if [ -n "$cg_dir" ]; then
            run+=(valgrind -q --tool=callgrind --toggle-collect='measured_*'
                --callgrind-out-file="$cg_dir/$backend.$mode.out")
        fi
        [ -n "$cg_dir" ] || [ -n "$only" ] || wait_quiet
        printf 'bench: %s %s: %s %s %s\n' "${only:-round}" "$round" "$backend" "$mode" "$count" >&2
        lines=$("${run[@]}" "$program" "$mode" "${args[@]}") || die "$backend $mode failed (see above)"
        # The counting pass keeps only its counts: the tracepoint slows the timed figures.
        [ -z "$only" ] || lines=$(printf '%s\n' "$lines" | grep -E '_syscalls_per_' || true)
        [ -z "$lines" ] || printf '%s\n' "$lines" | sed "s/^/$round /" >>"$raw"
    }
    # The crypto floor of this round (no tunnel: this machine's AEAD rates, CPU time): ring's
    # own (the crypto rustls runs in dragent-tunnel) and openssl speed's (libcurl's), 16 KiB
    # buffers, encrypt and decrypt. Lines "ROUND ring|openssl aead_ALG_{seal,open}_mb_per_s".
    floors() { # ROUND
        local round=$1 alg name f rate
        local -a dec
        [ -z "$cg_dir" ] || return 0
        wait_quiet
        printf 'bench: round %s: crypto floor (ring, openssl speed)\n' "$round" >&2
        "$out/ring_floor" "$floor_s" | sed "s/^/$round /" >>"$raw" || die "ring_floor failed"
        command -v openssl >/dev/null || return 0
        for alg in aes-256-gcm aes-128-gcm chacha20-poly1305; do
            name=${alg//-/_}
            for f in seal open; do
                # -mr: "+F:N:NAME:BYTES_PER_SECOND" for the one buffer size (-bytes); openssl
                # divides by its CPU user time (not -elapsed). open = -decrypt.
                dec=()
                [ "$f" = seal ] || dec=(-decrypt)
                rate=$(openssl speed -evp "$alg" "${dec[@]}" -seconds "$floor_s" -bytes 16384 -mr \
                    2>/dev/null |
                    awk -F: '/^\+F:/ { printf "%.1f", $4 / 1e6; exit }')
                [ -z "$rate" ] || echo "$round openssl aead_${name}_${f}_mb_per_s $rate" >>"$raw"
            done
        done
    }
    for round in $(seq "$rounds"); do
        if [ $((round % 2)) -eq 1 ]; then order="dtun curl"; else order="curl dtun"; fi
        floors "$round"
        for mode in ${modes//,/ }; do
            case $mode in
            throughput) counts=$mib ;;
            memory) counts=$tunnels ;;
            messages)
                # "BYTES WINDOW N" per run: each payload size acked one by one (window 1),
                # then pipelined (window 8).
                counts=
                for sc in ${msg_counts//,/ }; do
                    counts+="${sc%%:*} 1 ${sc#*:},${sc%%:*} 8 ${sc#*:},"
                done
                ;;
            *) counts=$opens ;;
            esac
            IFS=, read -r -a count_list <<<"${counts%,}"
            for count in "${count_list[@]}"; do
                for backend in $order; do
                    measure "$round" "$backend" "$mode" "$count"
                done
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
all_modes=throughput,open-first,open-reconnect,memory,messages
rounds=5 mib=1024 opens=200 tunnels=100 modes=$all_modes quick= callgrind= rounds_set= quiet_wait=10
# Messages per run of the messages mode, "PAYLOAD_BYTES:COUNT" (each size runs acked one by
# one and pipelined with a window of 8); --quick takes a tenth. CPU seconds per floor figure.
msg_counts=256:20000,4096:10000,65536:2000,1048576:200 floor_s=1
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
    --curl-tls13-ciphers)
        [ $# -ge 2 ] || die "--curl-tls13-ciphers needs a list"
        export BENCH_CURL_TLS13_CIPHERS=$2
        shift
        ;;
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
    modes=$(tr , '\n' <<<"$modes" | grep -vxE 'memory|messages' | paste -sd, -) ||
        die "--callgrind does not measure memory or messages"
elif [ -n "$quick" ]; then
    mib=32 opens=50
    msg_counts=256:2000,4096:1000,65536:200,1048576:20
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
# The crypto floor's ring bench: its own workspace (benches/ring_floor, not a member of the
# library's), the ring version of the library's Cargo.lock, its own target dir.
if [ -z "$callgrind" ]; then
    printf 'bench: cargo build --release benches/ring_floor\n' >&2
    cargo build --release --locked --manifest-path benches/ring_floor/Cargo.toml \
        --target-dir "$out/cargo" >&2
    cp "$out/cargo/release/dtun-ring-floor" "$out/ring_floor"
    lib_ring=$(sed -n '/^name = "ring"$/{n;s/^version = "\(.*\)"$/\1/p}' Cargo.lock)
    floor_ring=$(sed -n '/^name = "ring"$/{n;s/^version = "\(.*\)"$/\1/p}' benches/ring_floor/Cargo.lock)
    [ "$lib_ring" = "$floor_ring" ] ||
        die "benches/ring_floor uses ring $floor_ring, the library ring $lib_ring: update its Cargo.toml"
    command -v openssl >/dev/null ||
        printf 'bench: openssl is not installed: no openssl speed figures\n' >&2
fi
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
"$target/dtun-testenv" run --dir "$env_dir" --real-proxies --no-ntlm -- \
    "$0" --in-env "$raw" "$rounds" "$mib" "$opens" "$tunnels" "$modes" "$quiet_wait" \
    "$msg_counts" "$floor_s" "$cg_dir" ||
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
    printf 'TLS to the collector inside the tunnel (TLS in TLS: the echo collector; for messages the\n'
    printf 'framed collector, which acks each one); %s CPUs shared by client, squid and collectors\n' \
        "$(getconf _NPROCESSORS_ONLN)"
    [ -z "${BENCH_CURL_TLS13_CIPHERS:-}" ] ||
        printf 'EXPERIMENT: libcurl offers only the TLS 1.3 suites %s on both hops\n' "$BENCH_CURL_TLS13_CIPHERS"
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

# ------------------------------------------------------------------ the crypto floor
# Per round, from that round's AEAD rates (MB/s of CPU time, 16 KiB records): one pass
# (encrypting or decrypting every byte once) at the harmonic mean of the seal and open rates
# (an echo seals as many bytes as it opens, so their times add). Echoing one GiB (sent
# once, received once) through TLS in TLS costs the client four passes: on the way out the
# collector's TLS seals it, then the proxy's TLS seals that again; on the way back the
# proxy's TLS opens it, then the collector's. Message payload sent goes one way: two seal
# passes per byte (the 14-byte acks are left out). The floor is the faster of ring and
# openssl for AES-256-GCM, the suite both hops negotiate. Record headers and tags (22 bytes
# per 16 KiB record and layer) are left out too. Appended to raw.txt as backend "floor".
# The table also shows each CPU per GiB against the floor of the suite that library
# negotiated (AES-128-GCM for dtun since it prefers it).
if [ -s "$raw" ] && ! grep -q '^[0-9]* floor ' "$raw"; then
    awk '
        { v[$1, $2, $3] = $4; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
        function hm(a, b) { return (a > 0 && b > 0) ? 2 / (1 / a + 1 / b) : 0 }
        END {
            split("aes_256_gcm aes_128_gcm chacha20_poly1305", algs, " ")
            for (i = 1; i <= n; i++) {
                r = order[i]
                for (j = 1; j <= 3; j++) {
                    a = "aead_" algs[j]
                    o = hm(v[r, "openssl", a "_seal_mb_per_s"], v[r, "openssl", a "_open_mb_per_s"])
                    if (o > 0) printf "%s openssl %s_mb_per_s %.1f\n", r, a, o
                    g = v[r, "ring", a "_mb_per_s"] + 0
                    best = g >= o ? g : o
                    if (best <= 0) continue
                    if (j == 1) {
                        src = g >= o ? "ring" : "openssl"
                        seal = v[r, src, a "_seal_mb_per_s"]
                        printf "%s floor pass_mb_per_s %.1f\n", r, best
                        printf "%s floor pass_source %s\n", r, src
                        printf "%s floor echo_s_per_gib %.4f\n", r, 4 * 1073741824 / (best * 1e6)
                        printf "%s floor echo_mb_per_s %.1f\n", r, best / 4
                        printf "%s floor msg_ms_per_mib %.4f\n", r, 2 * 1048576 / (seal * 1e6) * 1e3
                    } else
                        printf "%s floor echo_s_per_gib_%s %.4f\n", r, algs[j], 4 * 1073741824 / (best * 1e6)
                }
            }
        }' "$raw" >"$raw.floor"
    cat "$raw.floor" >>"$raw"
    rm -f "$raw.floor"
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
# The table: from raw.txt, round by round. A target's verdict: its median over the rounds
# meets the goal, and so does its value in at least need_rounds of them (4 of 5; in general
# all but one in five; "never": every round).
awk -v rounds="$rounds" -v mib="$mib" -v opens="$opens" -v tunnels="$tunnels" \
    -v msg_counts="$msg_counts" -v ring_version="${lib_ring:-?}" '
    {
        r = $1; b = $2; m = $3
        v[r, b, m] = $4
        if (!((b, m) in first)) first[b, m] = $4
        if (!(r in isround)) { isround[r] = 1; roundlist[++nr] = r }
    }
    function sort(a, n,   i, j, t) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    }
    function median(a, n) { sort(a, n); return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    function isnum(x) { return x ~ /^-?[0-9.]+(e[-+]?[0-9]+)?$/ }
    # The per-round series of one figure into s[1..n]; kind "value": backend b metric m;
    # "ratio": dtun / curl of metric m; "xfloor": backend b metric m over the floor figure fm.
    function series(kind, b, m, fm, s,   i, r, n) {
        n = 0; delete s
        for (i = 1; i <= nr; i++) {
            r = roundlist[i]
            if (kind == "value" && ((r, b, m) in v) && isnum(v[r, b, m])) s[++n] = v[r, b, m] + 0
            if (kind == "ratio" && ((r, "dtun", m) in v) && ((r, "curl", m) in v) && v[r, "curl", m] + 0 != 0)
                s[++n] = v[r, "dtun", m] / v[r, "curl", m]
            if (kind == "xfloor" && ((r, b, m) in v) && ((r, "floor", fm) in v) && v[r, "floor", fm] + 0 != 0)
                s[++n] = v[r, b, m] / v[r, "floor", fm]
        }
        return n
    }
    function num(x) { return (x >= 1000 || x <= -1000) ? sprintf("%.0f", x) : sprintf("%.3g", x) }
    # Median of a series, with ± half its spread in percent when there are several rounds.
    function stat(kind, b, m, fm,   s, n, lo, hi, med) {
        n = series(kind, b, m, fm, s)
        if (n == 0) return "-"
        sort(s, n); lo = s[1]; hi = s[n]; med = median(s, n)
        if (n == 1 || med == 0) return num(med)
        return num(med) sprintf(" ±%.0f%%", (hi - lo) / 2 / (med < 0 ? -med : med) * 100)
    }
    function medv(kind, b, m, fm,   s, n) { n = series(kind, b, m, fm, s); return n ? median(s, n) : "" }
    function line(label, d, c, ratio, xf, goal, verdict) {
        printf "%-44s %13s %13s %11s %13s %6s  %s\n", label, d, c, ratio, xf, goal, verdict
    }
    function word(b, m) { return ((b, m) in first) ? first[b, m] : "-" }
    # The floor figure of a negotiated suite (rustls or OpenSSL name), "" if unknown.
    function suite_floor(name,   u) {
        u = toupper(name)
        if (u ~ /AES_256_GCM/) return "echo_s_per_gib"
        if (u ~ /AES_128_GCM/) return "echo_s_per_gib_aes_128_gcm"
        if (u ~ /CHACHA20/) return "echo_s_per_gib_chacha20_poly1305"
        return ""
    }
    # One target: per-round series of kind/b/m, each <= goal; need: rounds that must meet it.
    function target(label, kind, b, m, fm, goal, need, shown,   s, n, i, met, med, verdict) {
        n = series(kind, b, m, fm, s)
        if (n == 0) {
            if (((roundlist[1], "dtun", m) in v) || ((roundlist[1], "curl", m) in v))
                line(label, "", "", "", "", "<= " goal, "NOT MEASURED")
            return
        }
        met = 0
        for (i = 1; i <= n; i++) if (s[i] <= goal) met++
        med = median(s, n)
        if (need == "all") need = n
        verdict = (med <= goal && met >= need) ? "MET" : "NOT MET"
        verdict = verdict sprintf(" (%d of %d rounds; needs %d)", met, n, need)
        shown[1] = stat("value", "dtun", m, fm)
        shown[2] = stat("value", "curl", m, fm)
        if (kind == "ratio") line(label, shown[1], shown[2], stat(kind, b, m, fm), "", "<= " goal, verdict)
        else if (kind == "xfloor") line(label, shown[1], "", "", stat(kind, b, m, fm), "<= " goal, verdict)
        else line(label, stat(kind, b, m, fm), (b == "dtun" ? shown[2] : ""), "", "", "<= " goal, verdict)
        if (verdict !~ /^MET/) notmet++
    }
    # A context row: medians of both, their ratio, and with fm the multiple of floor fm.
    function info(label, m, fm,   d, c, xf) {
        d = stat("value", "dtun", m); c = stat("value", "curl", m)
        if (d == "-" && c == "-") return
        xf = ""
        if (fm != "") xf = stat("xfloor", "dtun", m, fm) " / " stat("xfloor", "curl", m, fm)
        line(label, d, c, stat("ratio", "", m), xf, "", "")
    }
    function busy(label, p,   d, c) {
        d = medv("value", "dtun", p "_other_cpu_pct"); c = medv("value", "curl", p "_other_cpu_pct")
        if (d == "" && c == "") return
        line("  " label, stat("value", "dtun", p "_other_cpu_pct"), stat("value", "curl", p "_other_cpu_pct"), "", "", "", "")
        if (d > 20 || c > 20) noisy = 1
    }
    END {
        need = rounds - int(rounds / 5)
        printf "%s MiB echoed in 64 KiB blocks, %s opens, %s idle tunnels, framed messages %s (PAYLOAD:COUNT);\n", mib, opens, tunnels, msg_counts
        printf "median of %s round(s)%s\n\n", rounds, (rounds > 1 ? " ± half their spread" : "")
        if (("floor", "pass_mb_per_s") in first) {
            printf "crypto floor (AES-256-GCM as issue 15 defines it; per round the faster of ring and openssl):\n"
            printf "  one AEAD pass %s MB/s (%s), so one echoed GiB (sent once, received once) needs 4 passes:\n", stat("value", "floor", "pass_mb_per_s"), word("floor", "pass_source")
            printf "  %s s of client CPU at least; one MiB of message payload sent needs 2: %s ms\n\n", stat("value", "floor", "echo_s_per_gib"), stat("value", "floor", "msg_ms_per_mib")
        }
        line("issue 15 targets", "dtun", "curl", "dtun/curl", "dtun x floor", "goal", "verdict")
        line("----------------", "----", "----", "---------", "------------", "----", "-------")
        target("client CPU per GiB echoed (s)", "ratio", "", "throughput_cpu_s_per_gib", "", 0.5, need)
        target("client CPU per GiB echoed, x 4-pass floor", "xfloor", "dtun", "throughput_cpu_s_per_gib", "echo_s_per_gib", 2.0, need)
        target("256 B acked msgs: CPU per msg (us)", "ratio", "", "msg_256_w1_cpu_us_per_msg", "", 0.5, need)
        target("256 B acked msgs: median round trip (us)", "ratio", "", "msg_256_w1_rtt_p50_us", "", 1.0, need)
        target("client CPU per first connect (ms)", "ratio", "", "open_first_cpu_ms", "", 0.3, need)
        target("client CPU per reconnect (ms)", "ratio", "", "open_reconnect_cpu_ms", "", 0.2, need)
        target("RSS per idle tunnel (KiB)", "ratio", "", "mem_rss_per_idle_tunnel_kib", "", 0.3, need)
        target("library threads (peak, 1.." tunnels " tunnels)", "value", "dtun", "library_threads_peak", "", 2, "all")

        printf "\n"
        line("also watched", "dtun", "curl", "dtun/curl", "", "goal", "verdict")
        line("------------", "----", "----", "---------", "", "----", "-------")
        split("proxy collector", hops, " ")
        for (h = 1; h <= 2; h++) {
            m = "open_reconnect_resumed_" hops[h] "_frac"
            x = medv("value", "dtun", m)
            if (x != "") line("reconnects resuming TLS, " hops[h] " hop", stat("value", "dtun", m), stat("value", "curl", m), "", "", "1.00", x >= 1 ? "MET" : "NOT MET")
        }
        m = "throughput_echo_cpu_pct"; d = medv("value", "dtun", m); c = medv("value", "curl", m)
        if (d != "" && c != "") line("echo collector CPU, throughput (%)", stat("value", "dtun", m), stat("value", "curl", m), "", "", "< 100", (d < 100 && c < 100) ? "not the bottleneck" : "BOTTLENECK")

        printf "\n"
        line("agent messages (framed, acked by the", "dtun", "curl", "dtun/curl", "x floor d / c", "", "")
        line("collector; window 1: acked one by one)", "", "", "", "", "", "")
        line("--------------", "----", "----", "---------", "-------------", "", "")
        n = split(msg_counts, mc, ",")
        for (i = 1; i <= n; i++) {
            split(mc[i], pc, ":"); bytes = pc[1]
            lab = (bytes % 1048576 == 0) ? bytes / 1048576 "m" : ((bytes % 1024 == 0) ? bytes / 1024 "k" : bytes)
            name = (bytes % 1048576 == 0) ? bytes / 1048576 " MiB" : ((bytes % 1024 == 0) ? bytes / 1024 " KiB" : bytes " B")
            for (w = 1; w <= 8; w += 7) {
                p = "msg_" lab "_w" w
                if (medv("value", "dtun", p "_cpu_us_per_msg") == "" && medv("value", "curl", p "_cpu_us_per_msg") == "") continue
                line(name ", window " w ": CPU per msg (us)", stat("value", "dtun", p "_cpu_us_per_msg"), stat("value", "curl", p "_cpu_us_per_msg"), stat("ratio", "", p "_cpu_us_per_msg"), "", "", "")
                info("  CPU per MiB of payload (ms)", p "_cpu_ms_per_mib", "msg_ms_per_mib")
                info("  round trip p50 (us)", p "_rtt_p50_us")
                info("  round trip p99 (us)", p "_rtt_p99_us")
                info("  payload MB/s", p "_mb_per_s", "")
                info("  collector CPU (% of a core)", p "_collector_cpu_pct")
                busy("other load (% of a core)", p)
            }
        }

        printf "\n"
        line("context", "dtun", "curl", "dtun/curl", "x floor d / c", "", "")
        line("-------", "----", "----", "---------", "-------------", "", "")
        info("client CPU per GiB echoed (s)", "throughput_cpu_s_per_gib", "echo_s_per_gib")
        info("  client user CPU per GiB (s)", "throughput_user_s_per_gib", "echo_s_per_gib")
        info("  client system CPU per GiB (s)", "throughput_sys_s_per_gib", "echo_s_per_gib")
        # The floor of the suite each one negotiated on the collector hop (the proxy hop
        # has the same one so far; both rows below say so).
        fd = suite_floor(word("dtun", "check_collector_cipher")); fc = suite_floor(word("curl", "check_collector_cipher"))
        if (fd != "" || fc != "")
            line("  x floor of the suite it negotiated", "", "", "", (fd == "" ? "-" : stat("xfloor", "dtun", "throughput_cpu_s_per_gib", fd)) " / " (fc == "" ? "-" : stat("xfloor", "curl", "throughput_cpu_s_per_gib", fc)), "", "")
        info("throughput (MB/s)", "throughput_mb_per_s", "")
        m = "throughput_mb_per_s"
        if (medv("value", "dtun", m) != "" && medv("value", "floor", "echo_mb_per_s") != "")
            line("  as a share of the floor rate (MB/s / floor)", stat("xfloor", "dtun", m, "echo_mb_per_s"), stat("xfloor", "curl", m, "echo_mb_per_s"), "", "", "", "")
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
        if (word("dtun", "open_first_echo_bytes") != "-")
            line("bytes echoed per open before close", word("dtun", "open_first_echo_bytes"), word("curl", "open_first_echo_bytes"), "", "", "", "")
        info("RSS before any tunnel (KiB)", "mem_rss_before_kib")
        info("RSS with 1 tunnel (KiB)", "mem_rss_1_kib")
        info("RSS with " tunnels " tunnels (KiB)", "mem_rss_n_kib")
        info("threads with " tunnels " tunnels", "threads_n")
        if (word("dtun", "check_proxy_tls_version") != "-" || word("curl", "check_proxy_tls_version") != "-") {
            printf "%-44s dtun %s, curl %s\n", "TLS version, proxy hop / collector hop", word("dtun", "check_proxy_tls_version") " / " word("dtun", "check_collector_tls_version"), word("curl", "check_proxy_tls_version") " / " word("curl", "check_collector_tls_version")
            printf "%-44s dtun %s, curl %s\n", "cipher suite, proxy hop (squid)", word("dtun", "check_proxy_cipher"), word("curl", "check_proxy_cipher")
            printf "%-44s dtun %s, curl %s\n", "cipher suite, collector hop", word("dtun", "check_collector_cipher"), word("curl", "check_collector_cipher")
        }
        line("other load on the machine (% of a core)", "", "", "", "", "", "")
        busy("during throughput", "throughput")
        busy("during first connects", "open_first")
        busy("during reconnects", "open_reconnect")

        if (("ring", "aead_aes_256_gcm_seal_mb_per_s") in first) {
            printf "\n"
            line("crypto floor: AEAD MB/s of CPU, 16 KiB", "seal", "open", "one pass", "", "", "")
            line("---------------------------------------", "----", "----", "--------", "", "", "")
            split("aes_256_gcm aes_128_gcm chacha20_poly1305", algs, " ")
            for (i = 1; i <= 3; i++) {
                a = "aead_" algs[i]
                line("ring " ring_version " " algs[i], stat("value", "ring", a "_seal_mb_per_s"), stat("value", "ring", a "_open_mb_per_s"), stat("value", "ring", a "_mb_per_s"), "", "", "")
                if (("openssl", a "_seal_mb_per_s") in first)
                    line("openssl speed -evp " algs[i], stat("value", "openssl", a "_seal_mb_per_s"), stat("value", "openssl", a "_open_mb_per_s"), stat("value", "openssl", a "_mb_per_s"), "", "", "")
            }
            line("4-pass floor per echoed GiB (s)", stat("value", "floor", "echo_s_per_gib"), "", "", "", "", "")
            line("  with AES-128-GCM instead (s)", stat("value", "floor", "echo_s_per_gib_aes_128_gcm"), "", "", "", "", "")
            line("  with ChaCha20-Poly1305 instead (s)", stat("value", "floor", "echo_s_per_gib_chacha20_poly1305"), "", "", "", "", "")
        }
        if (noisy) printf "\nWARNING: other processes used more than 20%% of a core during some measurements:\nthose figures are noisy; rerun on an idle machine or with more --rounds.\n"
        if (rounds < 5) printf "\nNOTE: %d round(s) only: issue 15 judges medians of 5 rounds, each met in at least 4.\n", rounds
    }' "$raw"
rm -f "$summary.tmp"
printf '\nraw figures: %s; medians and ratios: %s\n' "$raw" "$summary"
