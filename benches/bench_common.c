/*
 * The benchmark driver shared by bench_dtun.c and bench_curl.c: see bench_common.h, and
 * benches/README.md for the method and the meaning of every figure.
 */

#define _GNU_SOURCE

#include "bench_common.h"

#include <errno.h>
#include <linux/perf_event.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Echo block size: the agent-like unit of the throughput test. */
#define BLOCK (64 * 1024)
/* Blocks echoed before the measurement starts (buffers allocated, TCP windows open). */
#define WARMUP_BLOCKS 16
/* Blocks compared byte for byte (the first ones and the last one); every other block has
 * its sequence number checked at both ends. */
#define FULL_CHECK_BLOCKS 16
/* Instrumented opens made after each open measurement to see which hops resumed TLS. */
#define RESUME_SAMPLES 10
/* Bytes echoed on each idle tunnel of the memory test, and by the check open. */
#define IDLE_ECHO 64
#define CHECK_ECHO 1024
/* Bytes echoed on each tunnel of the open tests between open and close, unless
 * BENCH_OPEN_ECHO says otherwise (0: bare open+close). A tunnel carries data, and only a
 * client that reads gets the TLS 1.3 session tickets the server sends after its handshake:
 * without any read no session of the collector hop can be resumed. */
#define OPEN_ECHO_DEFAULT 64
#define OPEN_ECHO_MAX 65536

static size_t open_echo = OPEN_ECHO_DEFAULT;
static unsigned char open_echo_out[OPEN_ECHO_MAX], open_echo_back[OPEN_ECHO_MAX];

static const struct bench_backend *B;

/* ---------------------------------------------------------------- small helpers */

const char *bench_env(const char *name) {
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') {
        fprintf(stderr, "bench: environment variable %s is not set (run me through "
                        "scripts/bench.sh or dtun-testenv run)\n", name);
        return NULL;
    }
    return v;
}

void bench_out(const char *backend, const char *metric, const char *fmt, ...) {
    va_list ap;
    printf("%s %s ", backend, metric);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

int bench_wait_fd(int fd, short events) {
    struct pollfd p = {.fd = fd, .events = events, .revents = 0};
    for (;;) {
        int n = poll(&p, 1, BENCH_IO_TIMEOUT_MS);
        if (n > 0) {
            return 0; /* ready, or an error the next call will report */
        }
        if (n == 0) {
            fprintf(stderr, "bench: no I/O readiness within %d ms\n", BENCH_IO_TIMEOUT_MS);
            return -1;
        }
        if (errno != EINTR) {
            perror("bench: poll");
            return -1;
        }
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double tv_s(struct timeval tv) {
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* CPU ticks (utime + stime, children excluded) of another process; -1 if unknown. */
static long long proc_ticks(long pid) {
    if (pid <= 0) {
        return -1;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    char line[1024];
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    /* The command name may hold spaces and parentheses: fields start after the last ')'. */
    char *p = strrchr(line, ')');
    if (p == NULL) {
        return -1;
    }
    p++;
    /* After ')': state is field 3; utime and stime are fields 14 and 15. */
    unsigned long long utime = 0, stime = 0;
    int field = 2;
    char *save = NULL;
    for (char *tok = strtok_r(p, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save)) {
        field++;
        if (field == 14) {
            utime = strtoull(tok, NULL, 10);
        } else if (field == 15) {
            stime = strtoull(tok, NULL, 10);
            return (long long)(utime + stime);
        }
    }
    return -1;
}

static long env_pid(const char *name) {
    const char *v = getenv(name);
    return v != NULL ? strtol(v, NULL, 10) : -1;
}

/* A value of /proc/self/status ("VmRSS", "Threads"), as a number; -1 if missing. */
static long self_status(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) {
        return -1;
    }
    char line[256];
    size_t klen = strlen(key);
    long value = -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            value = strtol(line + klen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return value;
}

/* A counter of the system calls this thread makes (the raw_syscalls:sys_enter tracepoint,
 * through perf_event_open), opened only when BENCH_SYSCALLS=1 because the tracepoint slows
 * every system call down a little; -1 when off or when the kernel does not allow it (tracefs
 * not mounted, not permitted). Only the benchmark's own thread is counted, where the I/O of
 * both libraries runs; dtun's short-lived resolver thread is not. */
static int syscall_counter = -1;

static void syscalls_open(void) {
    static const char *const ids[] = {
        "/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
        "/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id",
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        FILE *f = fopen(ids[i], "r");
        if (f == NULL) {
            continue;
        }
        unsigned long long id = 0;
        int ok = fscanf(f, "%llu", &id) == 1;
        fclose(f);
        if (!ok) {
            continue;
        }
        struct perf_event_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.type = PERF_TYPE_TRACEPOINT;
        attr.size = sizeof attr;
        attr.config = id;
        syscall_counter = (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
        return;
    }
}

static long long syscalls_now(void) {
    unsigned long long v = 0;
    if (syscall_counter < 0 || read(syscall_counter, &v, sizeof v) != (ssize_t)sizeof v) {
        return -1;
    }
    return (long long)v;
}

/* The whole machine's busy and stolen CPU ticks (first line of /proc/stat); -1 if unknown. */
static void machine_ticks(long long *busy, long long *steal) {
    *busy = *steal = -1;
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL) {
        return;
    }
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n == 8) {
        /* user nice system idle iowait irq softirq steal: busy is all but idle and iowait. */
        *busy = (long long)(v[0] + v[1] + v[2] + v[5] + v[6]);
        *steal = (long long)v[7];
    }
}

/* Everything one measured region needs at its start and end. */
struct snap {
    double wall, user, sys;
    long nvcsw, nivcsw;
    long long echo_ticks, squid_ticks, self_ticks, busy_ticks, steal_ticks;
    /* System calls counted when the snapshot began and when it ended: a region's count is
     * end.syscalls_in - start.syscalls_out, free of the snapshots' own calls. */
    long long syscalls_in, syscalls_out;
};

/* System calls per unit between two snapshots; negative if unknown. */
static double syscalls_per(const struct snap *a, const struct snap *z, double units) {
    if (a->syscalls_out < 0 || z->syscalls_in < 0) {
        return -1.0;
    }
    return (double)(z->syscalls_in - a->syscalls_out) / units;
}

static long echo_pid, squid_pid;

static struct snap snap_take(void) {
    struct snap s;
    s.syscalls_in = syscalls_now();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    s.user = tv_s(ru.ru_utime);
    s.sys = tv_s(ru.ru_stime);
    s.nvcsw = ru.ru_nvcsw;
    s.nivcsw = ru.ru_nivcsw;
    s.echo_ticks = proc_ticks(echo_pid);
    s.squid_ticks = proc_ticks(squid_pid);
    s.self_ticks = proc_ticks((long)getpid());
    machine_ticks(&s.busy_ticks, &s.steal_ticks);
    s.wall = now_s();
    s.syscalls_out = syscalls_now();
    return s;
}

/* CPU seconds another process spent between two snapshots; negative if unknown. */
static double ticks_s(long long a, long long b) {
    if (a < 0 || b < 0) {
        return -1.0;
    }
    return (double)(b - a) / (double)sysconf(_SC_CLK_TCK);
}

/* How busy the rest of the machine was during a region: CPU of every process other than this
 * one, the echo collector and squid (other benchmarks, compilers...), and CPU time stolen by
 * the hypervisor, both in percent of one CPU. Noisy figures come with high values here. */
static void out_machine(const char *prefix, const struct snap *a, const struct snap *z) {
    double wall = z->wall - a->wall;
    double busy = ticks_s(a->busy_ticks, z->busy_ticks);
    double self = ticks_s(a->self_ticks, z->self_ticks);
    double echo = ticks_s(a->echo_ticks, z->echo_ticks), squid = ticks_s(a->squid_ticks, z->squid_ticks);
    char metric[96];
    if (busy >= 0 && self >= 0) {
        double other = busy - self - (echo > 0 ? echo : 0) - (squid > 0 ? squid : 0);
        snprintf(metric, sizeof metric, "%s_other_cpu_pct", prefix);
        bench_out(B->name, metric, "%.1f", 100.0 * (other > 0 ? other : 0) / wall);
    }
    double steal = ticks_s(a->steal_ticks, z->steal_ticks);
    if (steal >= 0) {
        snprintf(metric, sizeof metric, "%s_steal_pct", prefix);
        bench_out(B->name, metric, "%.1f", 100.0 * steal / wall);
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(double *v, size_t n, double p) {
    qsort(v, n, sizeof *v, cmp_double);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

/* Echoes len bytes of buf and checks the answer. Returns the recv calls made, -1 on error. */
static long echo_check(void *conn, const unsigned char *buf, unsigned char *back, size_t len) {
    if (B->send_all(conn, buf, len) != 0) {
        return -1;
    }
    size_t got = 0;
    long calls = 0;
    while (got < len) {
        long n = B->recv_some(conn, back + got, len - got);
        if (n <= 0) {
            fprintf(stderr, "%s: echo: stream ended after %zu of %zu bytes\n", B->name, got, len);
            return -1;
        }
        got += (size_t)n;
        calls++;
    }
    if (memcmp(buf, back, len) != 0) {
        fprintf(stderr, "%s: echo: the bytes that came back differ from those sent\n", B->name);
        return -1;
    }
    return calls;
}

static void fill(unsigned char *buf, size_t len, uint32_t seed) {
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (unsigned char)x;
    }
}

/* ---------------------------------------------------------------- throughput */

/* The measured region of the throughput test (a function of its own so that callgrind can
 * count its instructions alone: --toggle-collect=measured_*). Returns the recv calls made, or
 * -1 on failure. */
static __attribute__((noinline)) long measured_echo_blocks(void *conn, unsigned char *out,
                                                           unsigned char *back, long blocks) {
    long recv_calls = 0;
    for (long i = 0; i < blocks; i++) {
        int full = i < FULL_CHECK_BLOCKS || i == blocks - 1;
        uint64_t seq = (uint64_t)i;
        memcpy(out, &seq, sizeof seq);
        memcpy(out + BLOCK - sizeof seq, &seq, sizeof seq);
        if (full) {
            long calls = echo_check(conn, out, back, BLOCK);
            if (calls < 0) {
                return -1;
            }
            recv_calls += calls;
            continue;
        }
        if (B->send_all(conn, out, BLOCK) != 0) {
            return -1;
        }
        size_t got = 0;
        while (got < BLOCK) {
            long n = B->recv_some(conn, back + got, BLOCK - got);
            if (n <= 0) {
                fprintf(stderr, "%s: throughput: stream ended in block %ld\n", B->name, i);
                return -1;
            }
            got += (size_t)n;
            recv_calls++;
        }
        if (memcmp(back, &seq, sizeof seq) != 0 ||
            memcmp(back + BLOCK - sizeof seq, &seq, sizeof seq) != 0) {
            fprintf(stderr, "%s: throughput: block %ld came back wrong\n", B->name, i);
            return -1;
        }
    }
    return recv_calls;
}

static int run_throughput(long mib) {
    unsigned char *out = malloc(BLOCK), *back = malloc(BLOCK);
    if (out == NULL || back == NULL) {
        return 1;
    }
    fill(out, BLOCK, 1);
    void *conn = B->open(NULL, BENCH_FIRST, 0);
    if (conn == NULL) {
        return 1;
    }
    for (int i = 0; i < WARMUP_BLOCKS; i++) {
        if (echo_check(conn, out, back, BLOCK) < 0) {
            return 1;
        }
    }
    long blocks = mib * (1024 * 1024 / BLOCK);
    struct snap a = snap_take();
    long recv_calls = measured_echo_blocks(conn, out, back, blocks);
    if (recv_calls < 0) {
        return 1;
    }
    struct snap z = snap_take();
    B->close(conn);

    double wall = z.wall - a.wall;
    double user = z.user - a.user, sys = z.sys - a.sys;
    double gib = (double)blocks * BLOCK / (1024.0 * 1024.0 * 1024.0);
    const char *n = B->name;
    bench_out(n, "throughput_mib", "%ld", mib);
    bench_out(n, "throughput_wall_s", "%.4f", wall);
    bench_out(n, "throughput_mb_per_s", "%.1f", (double)blocks * BLOCK / 1e6 / wall);
    bench_out(n, "throughput_cpu_s_per_gib", "%.4f", (user + sys) / gib);
    bench_out(n, "throughput_user_s_per_gib", "%.4f", user / gib);
    bench_out(n, "throughput_sys_s_per_gib", "%.4f", sys / gib);
    bench_out(n, "throughput_client_cpu_pct", "%.1f", 100.0 * (user + sys) / wall);
    double echo = ticks_s(a.echo_ticks, z.echo_ticks), squid = ticks_s(a.squid_ticks, z.squid_ticks);
    if (echo >= 0) {
        bench_out(n, "throughput_echo_cpu_pct", "%.1f", 100.0 * echo / wall);
    }
    if (squid >= 0) {
        bench_out(n, "throughput_squid_cpu_pct", "%.1f", 100.0 * squid / wall);
    }
    out_machine("throughput", &a, &z);
    bench_out(n, "throughput_vcsw_per_mib", "%.2f",
              (double)(z.nvcsw - a.nvcsw) / (double)(blocks * BLOCK) * 1048576.0);
    double sc = syscalls_per(&a, &z, (double)blocks);
    if (sc >= 0) {
        bench_out(n, "throughput_syscalls_per_block", "%.2f", sc);
    }
    bench_out(n, "throughput_recv_calls_per_block", "%.2f", (double)recv_calls / (double)blocks);
    free(out);
    free(back);
    return 0;
}

/* ---------------------------------------------------------------- opens */

/* RESUME_SAMPLES instrumented opens like the measured ones: which hops resumed TLS. The
 * first one also describes the tunnel and checks that it echoes. */
static int resume_pass(void *ctx, enum bench_open_kind kind, const char *prefix, int describe) {
    int proxy = 0, collector = 0, known = 0, offered_proxy = 0, offered_collector = 0;
    int offered_known = 0;
    for (int i = 0; i < RESUME_SAMPLES; i++) {
        void *conn = B->open(ctx, kind, 1);
        if (conn == NULL) {
            return 1;
        }
        if (open_echo > 0 && echo_check(conn, open_echo_out, open_echo_back, open_echo) < 0) {
            return 1;
        }
        struct bench_resumed r = B->resumed(conn);
        if (r.proxy >= 0 && r.collector >= 0) {
            proxy += r.proxy;
            collector += r.collector;
            known++;
        }
        if (r.offered_proxy >= 0 && r.offered_collector >= 0) {
            offered_proxy += r.offered_proxy;
            offered_collector += r.offered_collector;
            offered_known++;
        }
        if (i == 0 && describe) {
            if (B->describe != NULL) {
                B->describe(conn);
            }
            unsigned char out[CHECK_ECHO], back[CHECK_ECHO];
            fill(out, sizeof out, 7);
            if (echo_check(conn, out, back, sizeof out) < 0) {
                return 1;
            }
            bench_out(B->name, "check_echo_ok", "1");
        }
        B->close(conn);
    }
    if (known > 0) {
        char metric[96];
        snprintf(metric, sizeof metric, "%s_resumed_proxy_frac", prefix);
        bench_out(B->name, metric, "%.2f", (double)proxy / known);
        snprintf(metric, sizeof metric, "%s_resumed_collector_frac", prefix);
        bench_out(B->name, metric, "%.2f", (double)collector / known);
    }
    if (offered_known > 0) {
        char metric[96];
        snprintf(metric, sizeof metric, "%s_offered_proxy_frac", prefix);
        bench_out(B->name, metric, "%.2f", (double)offered_proxy / offered_known);
        snprintf(metric, sizeof metric, "%s_offered_collector_frac", prefix);
        bench_out(B->name, metric, "%.2f", (double)offered_collector / offered_known);
    }
    return 0;
}

static void out_ms(const char *prefix, const char *what, double seconds) {
    char metric[96];
    snprintf(metric, sizeof metric, "%s_%s", prefix, what);
    bench_out(B->name, metric, "%.4f", seconds * 1e3);
}

/* The measured region of the open tests (see measured_echo_blocks): n opens and closes,
 * each with open_echo bytes echoed in between; the wall time of each goes to walls[]. */
static __attribute__((noinline)) int measured_opens(void *ctx, enum bench_open_kind kind, long n,
                                                    double *walls) {
    for (long i = 0; i < n; i++) {
        double t0 = now_s();
        void *conn = B->open(ctx, kind, 0);
        if (conn == NULL) {
            return 1;
        }
        if (open_echo > 0 && echo_check(conn, open_echo_out, open_echo_back, open_echo) < 0) {
            return 1;
        }
        B->close(conn);
        walls[i] = now_s() - t0;
    }
    return 0;
}

static int run_opens(enum bench_open_kind kind, long n) {
    const char *prefix = kind == BENCH_FIRST ? "open_first" : "open_reconnect";
    void *ctx = NULL;
    if (kind == BENCH_RECONNECT && (ctx = B->context_new()) == NULL) {
        return 1;
    }
    /* Warm-up: one-time initialisation (runtime, code pages) and, for reconnects, the first
     * full handshakes whose sessions the measured opens resume. */
    for (int i = 0; i < 2; i++) {
        void *conn = B->open(ctx, kind, 0);
        if (conn == NULL) {
            return 1;
        }
        if (open_echo > 0 && echo_check(conn, open_echo_out, open_echo_back, open_echo) < 0) {
            return 1;
        }
        B->close(conn);
    }
    double *walls = calloc((size_t)n, sizeof *walls);
    if (walls == NULL) {
        return 1;
    }
    struct snap a = snap_take();
    if (measured_opens(ctx, kind, n, walls) != 0) {
        return 1;
    }
    struct snap z = snap_take();

    double per = 1.0 / (double)n;
    char metric[96];
    snprintf(metric, sizeof metric, "%s_echo_bytes", prefix);
    bench_out(B->name, metric, "%zu", open_echo);
    out_ms(prefix, "cpu_ms", (z.user - a.user + z.sys - a.sys) * per);
    out_ms(prefix, "user_ms", (z.user - a.user) * per);
    out_ms(prefix, "sys_ms", (z.sys - a.sys) * per);
    out_ms(prefix, "wall_ms", (z.wall - a.wall) * per);
    out_ms(prefix, "wall_p50_ms", percentile(walls, (size_t)n, 0.5));
    out_ms(prefix, "wall_p90_ms", percentile(walls, (size_t)n, 0.9));
    double echo = ticks_s(a.echo_ticks, z.echo_ticks), squid = ticks_s(a.squid_ticks, z.squid_ticks);
    if (echo >= 0) {
        out_ms(prefix, "echo_cpu_ms", echo * per);
    }
    if (squid >= 0) {
        out_ms(prefix, "squid_cpu_ms", squid * per);
    }
    double sc = syscalls_per(&a, &z, (double)n);
    if (sc >= 0) {
        snprintf(metric, sizeof metric, "%s_syscalls_per_open", prefix);
        bench_out(B->name, metric, "%.1f", sc);
    }
    out_machine(prefix, &a, &z);
    free(walls);

    if (kind == BENCH_FIRST) {
        /* The share of a first connect spent making and freeing its configuration. */
        struct snap c0 = snap_take();
        for (long i = 0; i < n; i++) {
            if (B->config_cycle() != 0) {
                return 1;
            }
        }
        struct snap c1 = snap_take();
        out_ms(prefix, "config_cpu_ms", (c1.user - c0.user + c1.sys - c0.sys) * per);
    }
    if (resume_pass(ctx, kind, prefix, kind == BENCH_FIRST) != 0) {
        return 1;
    }
    if (ctx != NULL) {
        B->context_free(ctx);
    }
    return 0;
}

/* ---------------------------------------------------------------- memory and threads */

static int run_memory(long n) {
    void *ctx = B->context_new();
    if (ctx == NULL) {
        return 1;
    }
    void **conns = calloc((size_t)n, sizeof *conns);
    if (conns == NULL) {
        return 1;
    }
    unsigned char out[IDLE_ECHO], back[IDLE_ECHO];
    fill(out, sizeof out, 3);
    long rss0 = self_status("VmRSS"), threads0 = self_status("Threads");
    long rss1 = 0, threads1 = 0, peak = threads0;
    for (long i = 0; i < n; i++) {
        conns[i] = B->open(ctx, BENCH_RECONNECT, 0);
        if (conns[i] == NULL) {
            return 1;
        }
        if (echo_check(conns[i], out, back, sizeof out) < 0) {
            return 1;
        }
        long t = self_status("Threads");
        if (t > peak) {
            peak = t;
        }
        if (i == 0) {
            rss1 = self_status("VmRSS");
            threads1 = t;
        }
    }
    long rssn = self_status("VmRSS"), threadsn = self_status("Threads");
    if (threadsn > peak) {
        peak = threadsn;
    }
    const char *b = B->name;
    bench_out(b, "mem_tunnels", "%ld", n);
    bench_out(b, "mem_rss_before_kib", "%ld", rss0);
    bench_out(b, "mem_rss_1_kib", "%ld", rss1);
    bench_out(b, "mem_rss_n_kib", "%ld", rssn);
    bench_out(b, "mem_rss_first_tunnel_kib", "%ld", rss1 - rss0);
    if (n > 1) {
        bench_out(b, "mem_rss_per_idle_tunnel_kib", "%.1f", (double)(rssn - rss1) / (double)(n - 1));
    }
    bench_out(b, "threads_before", "%ld", threads0);
    bench_out(b, "threads_1", "%ld", threads1);
    bench_out(b, "threads_n", "%ld", threadsn);
    bench_out(b, "threads_peak", "%ld", peak);
    /* The benchmark itself runs on one thread: every other one was started by the library. */
    bench_out(b, "library_threads_peak", "%ld", peak - 1);
    for (long i = 0; i < n; i++) {
        B->close(conns[i]);
    }
    free(conns);
    B->context_free(ctx);
    return 0;
}

/* ---------------------------------------------------------------- framed messages */

/* The agent's framing (c-examples/agent_client.c, testenv's FramedCollector): a 4-byte
 * big-endian length that counts the 6-byte header too, a version byte, a type byte, then the
 * payload. The collector answers each message with an acknowledgement frame of type 0xAC
 * whose payload is the message's sequence number on the connection (from 1) and the payload
 * length it received, both 4-byte big-endian. */
#define FRAME_HEADER_LEN 6
#define FRAME_VERSION 4
#define MSG_TYPE_METRICS 1
#define ACK_TYPE 0xAC
#define ACK_FRAME_LEN (FRAME_HEADER_LEN + 8)
/* The framed collector closes the connection on longer frames (testenv MAX_FRAME_LEN). */
#define MAX_FRAME_LEN (16u * 1024 * 1024)
/* Largest window of unacknowledged messages. */
#define MAX_WINDOW 64

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t get_be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* Acknowledgements received but not yet matched to a message, across calls. */
struct acks {
    unsigned char buf[ACK_FRAME_LEN * MAX_WINDOW];
    size_t have;
    uint32_t next_seq; /* the collector's sequence number of the next message to be acked */
};

/* Reads at least one more acknowledgement (one recv call, and more only while no whole ack
 * has arrived yet); checks each one against the message it acknowledges (sequence number,
 * payload length). Returns the number of acks taken out of the buffer, -1 on error. With rtts
 * set, rtts[first + i] holds message first+i's send time on entry and becomes its round trip. */
static long acks_read(void *conn, struct acks *a, uint32_t payload, long max, double *rtts,
                      long first) {
    long taken = 0;
    while (taken == 0) {
        size_t cap = sizeof a->buf - a->have;
        /* Never read beyond the acks still owed: the next frame belongs to no one yet. */
        size_t owed = (size_t)max * ACK_FRAME_LEN;
        if (owed < a->have) {
            fprintf(stderr, "%s: messages: more acknowledgements than messages\n", B->name);
            return -1;
        }
        if (cap > owed - a->have) {
            cap = owed - a->have;
        }
        long n = B->recv_some(conn, a->buf + a->have, cap);
        if (n <= 0) {
            fprintf(stderr, "%s: messages: the stream ended while waiting for an ack\n", B->name);
            return -1;
        }
        a->have += (size_t)n;
        double t = now_s();
        size_t off = 0;
        while (a->have - off >= ACK_FRAME_LEN) {
            const unsigned char *f = a->buf + off;
            if (get_be32(f) != ACK_FRAME_LEN || f[4] != FRAME_VERSION || f[5] != ACK_TYPE) {
                fprintf(stderr, "%s: messages: the collector's reply is not an ack\n", B->name);
                return -1;
            }
            uint32_t seq = get_be32(f + 6), len = get_be32(f + 10);
            if (seq != a->next_seq || len != payload) {
                fprintf(stderr, "%s: messages: ack #%u for %u bytes, expected #%u for %u\n",
                        B->name, seq, len, a->next_seq, payload);
                return -1;
            }
            if (rtts != NULL) {
                rtts[first + taken] = t - rtts[first + taken];
            }
            a->next_seq++;
            taken++;
            off += ACK_FRAME_LEN;
        }
        memmove(a->buf, a->buf + off, a->have - off);
        a->have -= off;
    }
    return taken;
}

/* The measured region of the message test (see measured_echo_blocks): n framed messages,
 * at most window of them unacknowledged at any time (1: each acked before the next). The
 * first payload bytes carry the message's index. rtts[i]: from the start of message i's send
 * to the end of the recv call that brought its ack. */
static __attribute__((noinline)) int measured_messages(void *conn, unsigned char *frame,
                                                       size_t frame_len, long window, long n,
                                                       struct acks *a, double *rtts) {
    uint32_t payload = (uint32_t)(frame_len - FRAME_HEADER_LEN);
    long sent = 0, acked = 0;
    while (acked < n) {
        while (sent < n && sent - acked < window) {
            if (payload >= 4) {
                put_be32(frame + FRAME_HEADER_LEN, (uint32_t)sent);
            }
            rtts[sent] = now_s();
            if (B->send_all(conn, frame, frame_len) != 0) {
                return 1;
            }
            sent++;
        }
        long got = acks_read(conn, a, payload, sent - acked, rtts, acked);
        if (got < 0) {
            return 1;
        }
        acked += got;
    }
    return 0;
}

/* "256", "4k", "64k", "1m": the payload size in metric names. */
static void size_label(char *out, size_t cap, size_t bytes) {
    if (bytes >= 1048576 && bytes % 1048576 == 0) {
        snprintf(out, cap, "%zum", bytes / 1048576);
    } else if (bytes >= 1024 && bytes % 1024 == 0) {
        snprintf(out, cap, "%zuk", bytes / 1024);
    } else {
        snprintf(out, cap, "%zu", bytes);
    }
}

static int run_messages(size_t payload, long window, long n) {
    size_t frame_len = FRAME_HEADER_LEN + payload;
    if (frame_len > MAX_FRAME_LEN || window < 1 || window > MAX_WINDOW) {
        fprintf(stderr, "%s: messages: payload at most %u bytes, window 1..%d\n", B->name,
                MAX_FRAME_LEN - FRAME_HEADER_LEN, MAX_WINDOW);
        return 2;
    }
    unsigned char *frame = malloc(frame_len);
    double *rtts = calloc((size_t)n, sizeof *rtts);
    long warmup = n / 10 < 8 ? 8 : (n / 10 > 100 ? 100 : n / 10);
    double *warm_rtts = calloc((size_t)warmup, sizeof *warm_rtts);
    static struct acks acks;
    if (frame == NULL || rtts == NULL || warm_rtts == NULL) {
        return 1;
    }
    put_be32(frame, (uint32_t)frame_len);
    frame[4] = FRAME_VERSION;
    frame[5] = MSG_TYPE_METRICS;
    fill(frame + FRAME_HEADER_LEN, payload, 11);
    acks.have = 0;
    acks.next_seq = 1;
    void *conn = B->open(NULL, BENCH_FIRST, 0);
    if (conn == NULL) {
        return 1;
    }
    /* Warm-up, in the same pattern: buffers allocated, TCP windows open. */
    if (measured_messages(conn, frame, frame_len, window, warmup, &acks, warm_rtts) != 0) {
        return 1;
    }
    struct snap a = snap_take();
    if (measured_messages(conn, frame, frame_len, window, n, &acks, rtts) != 0) {
        return 1;
    }
    struct snap z = snap_take();
    B->close(conn);

    char label[32], prefix[64], metric[128];
    size_label(label, sizeof label, payload);
    snprintf(prefix, sizeof prefix, "msg_%s_w%ld", label, window);
#define OUT(what, ...)                                                                          \
    do {                                                                                        \
        snprintf(metric, sizeof metric, "%s_%s", prefix, what);                                 \
        bench_out(B->name, metric, __VA_ARGS__);                                                \
    } while (0)
    double wall = z.wall - a.wall, user = z.user - a.user, sys = z.sys - a.sys;
    double mib = (double)n * (double)payload / 1048576.0;
    double rtt_mean = 0;
    for (long i = 0; i < n; i++) {
        rtt_mean += rtts[i];
    }
    rtt_mean /= (double)n;
    OUT("count", "%ld", n);
    OUT("payload_bytes", "%zu", payload);
    OUT("window", "%ld", window);
    OUT("cpu_us_per_msg", "%.3f", (user + sys) / (double)n * 1e6);
    OUT("user_us_per_msg", "%.3f", user / (double)n * 1e6);
    OUT("sys_us_per_msg", "%.3f", sys / (double)n * 1e6);
    OUT("cpu_ms_per_mib", "%.4f", (user + sys) / mib * 1e3);
    OUT("rtt_mean_us", "%.2f", rtt_mean * 1e6);
    OUT("rtt_p50_us", "%.2f", percentile(rtts, (size_t)n, 0.5) * 1e6);
    OUT("rtt_p99_us", "%.2f", percentile(rtts, (size_t)n, 0.99) * 1e6);
    OUT("msgs_per_s", "%.1f", (double)n / wall);
    OUT("mb_per_s", "%.2f", (double)n * (double)payload / 1e6 / wall);
    OUT("client_cpu_pct", "%.1f", 100.0 * (user + sys) / wall);
    OUT("vcsw_per_msg", "%.2f", (double)(z.nvcsw - a.nvcsw) / (double)n);
    double coll = ticks_s(a.echo_ticks, z.echo_ticks), squid = ticks_s(a.squid_ticks, z.squid_ticks);
    if (coll >= 0) {
        OUT("collector_cpu_pct", "%.1f", 100.0 * coll / wall);
    }
    if (squid >= 0) {
        OUT("squid_cpu_pct", "%.1f", 100.0 * squid / wall);
    }
    double sc = syscalls_per(&a, &z, (double)n);
    if (sc >= 0) {
        OUT("syscalls_per_msg", "%.2f", sc);
    }
#undef OUT
    out_machine(prefix, &a, &z);
    free(frame);
    free(rtts);
    free(warm_rtts);
    return 0;
}

/* ---------------------------------------------------------------- main */

static const char *USAGE =
    "usage: %s MODE [COUNT]\n"
    "  throughput [MIB]      echo MIB MiB (default 256) in 64 KiB blocks, one tunnel\n"
    "  open-first [N]        N opens+closes (default 200), a fresh configuration each\n"
    "  open-reconnect [N]    N opens+closes (default 200) from one configuration\n"
    "  memory [N]            RSS and threads with 1 and N (default 100) idle tunnels\n"
    "  messages BYTES WINDOW N  N framed messages of BYTES payload to an acknowledging\n"
    "                        collector, at most WINDOW unacknowledged (1: each acked first)\n"
    "Reads the test environment from DTUN_TESTENV_* (dtun-testenv run); BENCH_ECHO_PID and\n"
    "BENCH_SQUID_PID, when set, name the collector and proxy processes whose CPU is reported;\n"
    "BENCH_OPEN_ECHO: bytes echoed between open and close in the open tests (default 64);\n"
    "BENCH_SYSCALLS=1: also count the system calls of the measured regions (slows them a bit).\n";

int bench_main(const struct bench_backend *b, int argc, char **argv) {
    B = b;
    if (argc < 2) {
        fprintf(stderr, USAGE, argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    if (strcmp(mode, "messages") == 0) {
        long v[3] = {0, 0, 0};
        for (int i = 0; i < 3 && argc == 5; i++) {
            char *end = NULL;
            v[i] = strtol(argv[2 + i], &end, 10);
            if (*end != '\0' || v[i] <= 0) {
                v[i] = 0;
            }
        }
        if (argc != 5 || v[0] == 0 || v[1] == 0 || v[2] == 0) {
            fprintf(stderr, USAGE, argv[0]);
            return 2;
        }
        B = b;
        echo_pid = env_pid("BENCH_ECHO_PID");
        squid_pid = env_pid("BENCH_SQUID_PID");
        const char *cs = getenv("BENCH_SYSCALLS");
        if (cs != NULL && strcmp(cs, "1") == 0) {
            syscalls_open();
        }
        if (b->init() != 0) {
            return 1;
        }
        int rc = run_messages((size_t)v[0], v[1], v[2]);
        if (rc != 0) {
            fprintf(stderr, "%s %s: failed\n", b->name, mode);
        }
        return rc;
    }
    if (argc < 2 || argc > 3) {
        fprintf(stderr, USAGE, argv[0]);
        return 2;
    }
    long count = argc == 3 ? strtol(argv[2], NULL, 10) : 0;
    if (argc == 3 && count <= 0) {
        fprintf(stderr, USAGE, argv[0]);
        return 2;
    }
    const char *count_syscalls = getenv("BENCH_SYSCALLS");
    if (count_syscalls != NULL && strcmp(count_syscalls, "1") == 0) {
        syscalls_open();
        if (syscall_counter < 0) {
            fprintf(stderr, "%s: cannot count system calls (perf_event_open on the "
                            "raw_syscalls:sys_enter tracepoint failed)\n", b->name);
        }
    }
    echo_pid = env_pid("BENCH_ECHO_PID");
    squid_pid = env_pid("BENCH_SQUID_PID");
    const char *oe = getenv("BENCH_OPEN_ECHO");
    if (oe != NULL && *oe != '\0') {
        char *end = NULL;
        long v = strtol(oe, &end, 10);
        if (*end != '\0' || v < 0 || v > OPEN_ECHO_MAX) {
            fprintf(stderr, "BENCH_OPEN_ECHO must be 0..%d bytes, not %s\n", OPEN_ECHO_MAX, oe);
            return 2;
        }
        open_echo = (size_t)v;
    }
    fill(open_echo_out, sizeof open_echo_out, 5);
    if (b->init() != 0) {
        return 1;
    }
    int rc;
    if (strcmp(mode, "throughput") == 0) {
        rc = run_throughput(count ? count : 256);
    } else if (strcmp(mode, "open-first") == 0) {
        rc = run_opens(BENCH_FIRST, count ? count : 200);
    } else if (strcmp(mode, "open-reconnect") == 0) {
        rc = run_opens(BENCH_RECONNECT, count ? count : 200);
    } else if (strcmp(mode, "memory") == 0) {
        rc = run_memory(count ? count : 100);
    } else {
        fprintf(stderr, USAGE, argv[0]);
        return 2;
    }
    if (rc != 0) {
        fprintf(stderr, "%s %s: failed\n", b->name, mode);
    }
    return rc;
}
