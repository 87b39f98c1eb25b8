/*
 * libcurl's side of the benchmarks: what a C/C++ agent would otherwise do for the same job,
 * on the same path as bench_dtun (the test environment's squid https_port with Basic auth,
 * the TLS echo collector inside the tunnel). The measurements are bench_common.c's.
 *
 *   bench_curl MODE [COUNT]        (see bench_common.c; run it through scripts/bench.sh)
 *
 * A tunnel is an easy handle with CURLOPT_CONNECT_ONLY on an https:// URL through an
 * https:// proxy with CURLOPT_HTTPPROXYTUNNEL: curl_easy_perform() connects to the proxy,
 * does TLS with it, sends CONNECT with Basic credentials, then does TLS with the collector
 * inside the tunnel (TLS in TLS; the check_* lines of open-first show both handshakes), and
 * returns; bytes then go through curl_easy_send / curl_easy_recv, waiting with poll() on
 * CURLINFO_ACTIVESOCKET on CURLE_AGAIN, as curl's own sendrecv example does.
 *
 * Trust is the test CA only for both hops (CURLOPT_CAINFO / CURLOPT_PROXY_CAINFO, CA paths
 * cleared), as in the dragent.yaml. Both certificates are verified (curl's defaults).
 *
 * First connect: curl_easy_init + options + curl_easy_perform, then curl_easy_cleanup (which
 * closes the connection): a fresh handle has an empty TLS session cache and no share.
 *
 * Reconnect: a CURLSH sharing CURL_LOCK_DATA_SSL_SESSION, and a fresh easy handle per open
 * that uses it, closed with curl_easy_cleanup: the counterpart of one dtun_config with
 * dtun_open/dtun_close. curl offers the cached session on each hop
 * (CURLOPT_SSL_SESSIONID_CACHE is on by default). Reusing one easy handle instead, a new
 * curl_easy_perform per open (CURLOPT_FRESH_CONNECT), is no reconnect: curl 7.88 keeps every
 * earlier CONNECT_ONLY connection of the handle open until curl_easy_cleanup, even with
 * CURLOPT_MAXCONNECTS 1 (strace shows the sockets piling up), so an agent cannot close a
 * tunnel that way.
 */

#define _GNU_SOURCE

#include "bench_common.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#define OPEN_TIMEOUT_MS 10000L

static char url[512], proxy_url[512];
static const char *user, *password, *ca;

/* What the verbose trace of an instrumented open showed, per hop (0 proxy, 1 collector). */
struct trace {
    int hop;                /* the hop whose messages arrive now */
    int handshakes[2];      /* "SSL connection using ..." */
    int server_certs[2];    /* a Certificate handshake message received */
    int offered[2];         /* "SSL re-using session ID": a cached session was offered */
    char version[2][32];
    char cipher[2][64];
};

struct conn {
    CURL *easy;
    curl_socket_t sock;
    struct trace trace;
};

static int curl_init(void) {
    const char *host = bench_env("DTUN_TESTENV_HOST");
    const char *proxy_port = bench_env("DTUN_TESTENV_SQUID_TLS_AUTH_PORT");
    /* The collector: the TLS echo collector, or BENCH_COLLECTOR_PORT (the framed, acking
     * collector of the messages mode: bench.sh passes DTUN_TESTENV_FRAMED_TLS_PORT). */
    const char *echo_port = getenv("BENCH_COLLECTOR_PORT");
    if (echo_port == NULL || *echo_port == '\0') {
        echo_port = bench_env("DTUN_TESTENV_ECHO_TLS_PORT");
    }
    user = bench_env("DTUN_TESTENV_SQUID_USER");
    password = bench_env("DTUN_TESTENV_SQUID_PASSWORD");
    ca = bench_env("DTUN_TESTENV_CA");
    if (!host || !proxy_port || !echo_port || !user || !password || !ca) {
        return 1;
    }
    snprintf(url, sizeof url, "https://%s:%s", host, echo_port);
    snprintf(proxy_url, sizeof proxy_url, "https://%s:%s", host, proxy_port);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "curl: curl_global_init failed\n");
        return 1;
    }
    return 0;
}

/* Verbose trace of an instrumented open: which hop did a full handshake, which resumed. */
static int on_debug(CURL *easy, curl_infotype type, char *data, size_t size, void *userp) {
    (void)easy;
    struct trace *t = userp;
    if (type != CURLINFO_TEXT) {
        return 0;
    }
    char line[512];
    size_t n = size < sizeof line - 1 ? size : sizeof line - 1;
    memcpy(line, data, n);
    line[n] = '\0';
    if (getenv("BENCH_CURL_TRACE") != NULL) {
        fprintf(stderr, "curl trace [hop %d]: %s", t->hop, line);
    }
    int h = t->hop;
    const char *p;
    if (strstr(line, "CONNECT tunnel established") != NULL ||
        strstr(line, "CONNECT phase completed") != NULL) {
        t->hop = 1;
    } else if ((p = strstr(line, "SSL connection using ")) != NULL) {
        t->handshakes[h]++;
        char version[32] = "", cipher[64] = "";
        if (sscanf(p, "SSL connection using %31s / %63s", version, cipher) == 2) {
            snprintf(t->version[h], sizeof t->version[h], "%s", version);
            snprintf(t->cipher[h], sizeof t->cipher[h], "%s", cipher);
        }
    } else if (strstr(line, "(IN), TLS handshake, Certificate (11)") != NULL) {
        t->server_certs[h]++;
    } else if (strstr(line, "SSL re-using session ID") != NULL) {
        t->offered[h]++;
    }
    return 0;
}

static void set_common(CURL *e) {
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CONNECT_ONLY, 1L);
    curl_easy_setopt(e, CURLOPT_PROXY, proxy_url);
    curl_easy_setopt(e, CURLOPT_HTTPPROXYTUNNEL, 1L);
    /* Separate user and password: the password holds ':' '@' '/' '%' '+'. */
    curl_easy_setopt(e, CURLOPT_PROXYUSERNAME, user);
    curl_easy_setopt(e, CURLOPT_PROXYPASSWORD, password);
    curl_easy_setopt(e, CURLOPT_PROXYAUTH, (long)CURLAUTH_BASIC);
    curl_easy_setopt(e, CURLOPT_PROXY_CAINFO, ca);
    curl_easy_setopt(e, CURLOPT_PROXY_CAPATH, NULL);
    curl_easy_setopt(e, CURLOPT_CAINFO, ca);
    curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, OPEN_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    /* An experiment, off by default: the TLS 1.3 suites curl offers on both hops, in order
     * (OpenSSL names, e.g. TLS_AES_128_GCM_SHA256). The library has no such key. */
    const char *suites = getenv("BENCH_CURL_TLS13_CIPHERS");
    if (suites != NULL && *suites != '\0') {
        curl_easy_setopt(e, CURLOPT_TLS13_CIPHERS, suites);
        curl_easy_setopt(e, CURLOPT_PROXY_TLS13_CIPHERS, suites);
    }
}

static void *curl_context_new(void) {
    CURLSH *share = curl_share_init();
    if (share == NULL ||
        curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
        fprintf(stderr, "curl: cannot share TLS sessions\n");
        return NULL;
    }
    return share;
}

static void curl_context_free(void *share) {
    curl_share_cleanup(share);
}

static int curl_config_cycle(void) {
    CURL *e = curl_easy_init();
    if (e == NULL) {
        return 1;
    }
    set_common(e);
    curl_easy_cleanup(e);
    return 0;
}

static void *curl_open(void *share, enum bench_open_kind kind, int instrument) {
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return NULL;
    }
    c->easy = curl_easy_init();
    if (c->easy == NULL) {
        free(c);
        return NULL;
    }
    set_common(c->easy);
    if (kind == BENCH_RECONNECT) {
        curl_easy_setopt(c->easy, CURLOPT_SHARE, share);
    }
    if (instrument) {
        curl_easy_setopt(c->easy, CURLOPT_VERBOSE, 1L);
        curl_easy_setopt(c->easy, CURLOPT_DEBUGFUNCTION, on_debug);
        curl_easy_setopt(c->easy, CURLOPT_DEBUGDATA, &c->trace);
    }
    CURLcode rc = curl_easy_perform(c->easy);
    if (rc == CURLE_OK) {
        rc = curl_easy_getinfo(c->easy, CURLINFO_ACTIVESOCKET, &c->sock);
    }
    if (rc != CURLE_OK || c->sock == CURL_SOCKET_BAD) {
        fprintf(stderr, "curl: open: %s\n", curl_easy_strerror(rc));
        curl_easy_cleanup(c->easy);
        free(c);
        return NULL;
    }
    if (instrument) {
        /* The trace ends with the open: close messages are not about the handshakes. */
        curl_easy_setopt(c->easy, CURLOPT_VERBOSE, 0L);
    }
    return c;
}

static struct bench_resumed curl_resumed(void *p) {
    struct conn *c = p;
    struct bench_resumed r = {-1, -1, -1, -1};
    const struct trace *t = &c->trace;
    if (t->handshakes[0] == 1 && t->handshakes[1] == 1) {
        /* A resumed handshake has no Certificate message from the server. */
        r.proxy = t->server_certs[0] == 0;
        r.collector = t->server_certs[1] == 0;
        r.offered_proxy = t->offered[0] > 0;
        r.offered_collector = t->offered[1] > 0;
    }
    return r;
}

static void curl_describe(void *p) {
    struct conn *c = p;
    const struct trace *t = &c->trace;
    const char *name = "curl";
    long code = 0, proxy_verify = -1, verify = -1;
    curl_easy_getinfo(c->easy, CURLINFO_HTTP_CONNECTCODE, &code);
    curl_easy_getinfo(c->easy, CURLINFO_PROXY_SSL_VERIFYRESULT, &proxy_verify);
    curl_easy_getinfo(c->easy, CURLINFO_SSL_VERIFYRESULT, &verify);
    bench_out(name, "check_tls_handshakes", "%d", t->handshakes[0] + t->handshakes[1]);
    bench_out(name, "check_proxy_tls", "%s", t->handshakes[0] == 1 ? "yes" : "no");
    bench_out(name, "check_proxy_tls_version", "%s", t->version[0][0] ? t->version[0] : "-");
    bench_out(name, "check_proxy_cipher", "%s", t->cipher[0][0] ? t->cipher[0] : "-");
    bench_out(name, "check_proxy_status", "%ld", code);
    bench_out(name, "check_proxy_verify_result", "%ld", proxy_verify);
    bench_out(name, "check_collector_tls", "%s", t->handshakes[1] == 1 ? "yes" : "no");
    bench_out(name, "check_collector_tls_version", "%s", t->version[1][0] ? t->version[1] : "-");
    bench_out(name, "check_collector_cipher", "%s", t->cipher[1][0] ? t->cipher[1] : "-");
    bench_out(name, "check_collector_verify_result", "%ld", verify);
}

static int curl_send_all(void *p, const unsigned char *buf, size_t len) {
    struct conn *c = p;
    size_t off = 0;
    while (off < len) {
        size_t n = 0;
        CURLcode rc = curl_easy_send(c->easy, buf + off, len - off, &n);
        if (rc == CURLE_AGAIN) {
            if (bench_wait_fd(c->sock, POLLOUT) != 0) {
                return 1;
            }
            continue;
        }
        if (rc != CURLE_OK) {
            fprintf(stderr, "curl: send: %s\n", curl_easy_strerror(rc));
            return 1;
        }
        off += n;
    }
    return 0;
}

static long curl_recv_some(void *p, unsigned char *buf, size_t cap) {
    struct conn *c = p;
    for (;;) {
        size_t n = 0;
        CURLcode rc = curl_easy_recv(c->easy, buf, cap, &n);
        if (rc == CURLE_AGAIN) {
            if (bench_wait_fd(c->sock, POLLIN) != 0) {
                return -1;
            }
            continue;
        }
        if (rc != CURLE_OK) {
            fprintf(stderr, "curl: recv: %s\n", curl_easy_strerror(rc));
            return -1;
        }
        if (n == 0) {
            fprintf(stderr, "curl: recv: the collector closed the stream\n");
            return -1;
        }
        return (long)n;
    }
}

static void curl_close(void *p) {
    struct conn *c = p;
    curl_easy_cleanup(c->easy); /* closes the connection: TLS close_notify, then FIN */
    free(c);
}

int main(int argc, char **argv) {
    static const struct bench_backend backend = {
        .name = "curl",
        .init = curl_init,
        .context_new = curl_context_new,
        .context_free = curl_context_free,
        .config_cycle = curl_config_cycle,
        .open = curl_open,
        .resumed = curl_resumed,
        .send_all = curl_send_all,
        .recv_some = curl_recv_some,
        .close = curl_close,
        .describe = curl_describe,
    };
    return bench_main(&backend, argc, argv);
}
