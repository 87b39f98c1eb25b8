/*
 * The benchmark driver shared by bench_dtun.c (dragent-tunnel) and bench_curl.c (libcurl).
 *
 * Each program implements the backend below (open a tunnel, send, receive, close) and calls
 * bench_main(); the driver runs the same measurements on both, so the two programs differ
 * only in how they open and drive a tunnel. One mode per process (a fresh heap and fresh
 * TLS state each time): see bench_main() for the modes and benches/README.md for what each
 * figure means.
 *
 * Output: one line per figure, "<backend> <metric> <value>", on stdout; progress and errors
 * on stderr.
 */

#ifndef DTUN_BENCH_COMMON_H
#define DTUN_BENCH_COMMON_H

#include <stddef.h>

/* How a tunnel is opened. */
enum bench_open_kind {
    /* First connect: a fresh configuration (dtun_config / curl easy handle without a share)
     * for this one open, so no TLS session can be reused. */
    BENCH_FIRST,
    /* Reconnect: through the long-lived context made by backend.context_new(), whose TLS
     * session caches let the open resume the previous sessions. */
    BENCH_RECONNECT,
};

/* Which TLS hops resumed a session during an open, and on which the client offered one
 * (only known after an open made while instrumented; -1: unknown). */
struct bench_resumed {
    int proxy;
    int collector;
    int offered_proxy;
    int offered_collector;
};

struct bench_backend {
    /* "dtun" or "curl": the first word of every output line. */
    const char *name;
    /* Once per process, before anything else (read the environment, global init).
     * Returns 0 on success. */
    int (*init)(void);
    /* The long-lived context of reconnects (the shared dtun_config, the curl share).
     * NULL on failure (after printing why). */
    void *(*context_new)(void);
    void (*context_free)(void *ctx);
    /* Creates and frees the per-open configuration without connecting (dtun: the config
     * read from the dragent.yaml; curl: an easy handle with every option set), to tell the
     * configuration's cost from the connection's. Returns 0 on success. */
    int (*config_cycle)(void);
    /* Opens a tunnel; ctx is NULL for BENCH_FIRST. With instrument set, the open also
     * records which hops resumed a TLS session (see resumed()), at some cost: instrumented
     * opens are never timed. Returns NULL on failure (after printing why). */
    void *(*open)(void *ctx, enum bench_open_kind kind, int instrument);
    /* Which hops of an instrumented open resumed a session. */
    struct bench_resumed (*resumed)(void *conn);
    /* Sends all len bytes. Returns 0 on success. */
    int (*send_all)(void *conn, const unsigned char *buf, size_t len);
    /* Receives at least one and at most cap bytes. Returns the count, or -1 on failure or
     * end of stream. */
    long (*recv_some)(void *conn, unsigned char *buf, size_t cap);
    /* Closes the tunnel and frees everything the open made for it. */
    void (*close)(void *conn);
    /* Optional: prints "<name> check_<what> <value>" lines about one instrumented open
     * (TLS versions and ciphers of each hop). NULL if the backend has nothing to add. */
    void (*describe)(void *conn);
};

/* Runs the mode named on the command line; returns the process exit code. */
int bench_main(const struct bench_backend *b, int argc, char **argv);

/* Environment variable lookup that fails loudly: the value, or NULL after printing which
 * variable is missing. */
const char *bench_env(const char *name);

/* Prints "<backend> <metric> <value>". */
void bench_out(const char *backend, const char *metric, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Waits for the socket to become readable (events POLLIN) or writable (POLLOUT), at most
 * the driver's I/O timeout. Returns 0 when ready, -1 on timeout or error. */
int bench_wait_fd(int fd, short events);

/* The driver's I/O timeout, milliseconds (for calls that take one). */
#define BENCH_IO_TIMEOUT_MS 30000

#endif /* DTUN_BENCH_COMMON_H */
