/*
 * dragent-tunnel's side of the benchmarks: the C API opening the tunnels a dragent.yaml
 * describes (by default the test environment's squid_example3.yaml: TLS to squid with Basic
 * auth, TLS to the echo collector inside the tunnel). The measurements are bench_common.c's.
 *
 *   bench_dtun MODE [COUNT]        (see bench_common.c; run it through scripts/bench.sh)
 *
 * First connect: dtun_config_from_file + dtun_open + dtun_config_free, then dtun_close: no
 * TLS session can be reused. Reconnect: one dtun_config for every open, whose session
 * caches let the library resume TLS on both hops.
 */

#define _GNU_SOURCE

#include "bench_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dragent_tunnel.h>

#define OPEN_TIMEOUT_MS 10000

static char config_path[4096];

static int dtun_init(void) {
    const char *path = getenv("BENCH_CONFIG");
    if (path != NULL && *path != '\0') {
        snprintf(config_path, sizeof config_path, "%s", path);
        return 0;
    }
    const char *dir = bench_env("DTUN_TESTENV_DIR");
    if (dir == NULL) {
        return 1;
    }
    snprintf(config_path, sizeof config_path, "%s/squid_example3.yaml", dir);
    return 0;
}

static dtun_config *load(void) {
    dtun_config *cfg = NULL;
    dtun_status st = dtun_config_from_file(config_path, &cfg);
    if (st != DTUN_OK) {
        fprintf(stderr, "dtun: %s: %s: %s\n", config_path, dtun_status_name(st), dtun_last_error());
        return NULL;
    }
    return cfg;
}

static void *dtun_context_new(void) {
    return load();
}

static void dtun_context_free(void *ctx) {
    dtun_config_free(ctx);
}

static int dtun_config_cycle(void) {
    dtun_config *cfg = load();
    if (cfg == NULL) {
        return 1;
    }
    dtun_config_free(cfg);
    return 0;
}

static void *dtun_bench_open(void *ctx, enum bench_open_kind kind, int instrument) {
    (void)instrument; /* every connection keeps its report: nothing extra to switch on */
    dtun_config *cfg = kind == BENCH_FIRST ? load() : ctx;
    if (cfg == NULL) {
        return NULL;
    }
    dtun_conn *c = NULL;
    dtun_status st = dtun_open(cfg, OPEN_TIMEOUT_MS, &c);
    if (kind == BENCH_FIRST) {
        dtun_config_free(cfg); /* the connection does not need it */
    }
    if (st != DTUN_OK) {
        fprintf(stderr, "dtun: open: %s: %s\n", dtun_status_name(st), dtun_last_error());
        return NULL;
    }
    return c;
}

static int report_yes(const dtun_report *r, const char *key) {
    const char *v = dtun_report_get(r, key);
    if (v == NULL) {
        return -1;
    }
    return strcmp(v, "yes") == 0;
}

static struct bench_resumed dtun_resumed(void *conn) {
    struct bench_resumed res = {-1, -1, -1, -1}; /* the report does not say what was offered */
    dtun_report *r = NULL;
    if (dtun_conn_report(conn, &r) != DTUN_OK) {
        return res;
    }
    res.proxy = report_yes(r, "proxy.tls_resumed");
    res.collector = report_yes(r, "collector.tls_resumed");
    dtun_report_free(r);
    return res;
}

static void dtun_describe(void *conn) {
    dtun_report *r = NULL;
    if (dtun_conn_report(conn, &r) != DTUN_OK) {
        return;
    }
    static const char *const keys[][2] = {
        {"proxy.tls", "check_proxy_tls"},
        {"proxy.tls_version", "check_proxy_tls_version"},
        {"proxy.cipher_suite", "check_proxy_cipher"},
        {"proxy.auth", "check_proxy_auth"},
        {"proxy.status_code", "check_proxy_status"},
        {"collector.tls", "check_collector_tls"},
        {"collector.tls_version", "check_collector_tls_version"},
        {"collector.cipher_suite", "check_collector_cipher"},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = dtun_report_get(r, keys[i][0]);
        char word[128];
        snprintf(word, sizeof word, "%s", v != NULL ? v : "-");
        for (char *p = word; *p; p++) {
            if (*p == ' ') {
                *p = '_';
            }
        }
        bench_out("dtun", keys[i][1], "%s", word);
    }
    dtun_report_free(r);
}

static int dtun_bench_send(void *conn, const unsigned char *buf, size_t len) {
    size_t sent = 0;
    dtun_status st = dtun_send(conn, buf, len, &sent, BENCH_IO_TIMEOUT_MS);
    if (st != DTUN_OK) {
        fprintf(stderr, "dtun: send: %s (%zu of %zu sent): %s\n", dtun_status_name(st), sent, len,
                dtun_last_error());
        return 1;
    }
    return 0;
}

static long dtun_bench_recv(void *conn, unsigned char *buf, size_t cap) {
    size_t got = 0;
    dtun_status st = dtun_recv(conn, buf, cap, &got, BENCH_IO_TIMEOUT_MS);
    if (st != DTUN_OK) {
        fprintf(stderr, "dtun: recv: %s: %s\n", dtun_status_name(st), dtun_last_error());
        return -1;
    }
    return (long)got;
}

static void dtun_bench_close(void *conn) {
    dtun_close(conn);
}

int main(int argc, char **argv) {
    static const struct bench_backend backend = {
        .name = "dtun",
        .init = dtun_init,
        .context_new = dtun_context_new,
        .context_free = dtun_context_free,
        .config_cycle = dtun_config_cycle,
        .open = dtun_bench_open,
        .resumed = dtun_resumed,
        .send_all = dtun_bench_send,
        .recv_some = dtun_bench_recv,
        .close = dtun_bench_close,
        .describe = dtun_describe,
    };
    return bench_main(&backend, argc, argv);
}
