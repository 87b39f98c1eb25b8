/*
 * Every status that a C program can meet, each produced on purpose through the test
 * environment, with its message. The run ends by checking that none was missed.
 *
 * DTUN_ERR_INTERNAL is the one status not produced here: it reports a Rust panic caught at the
 * boundary, i.e. a bug in the library, and no correct input reaches one. A test-only hook
 * (compiled under cfg(test) only, so not in this library) makes the Rust unit test
 * `a_panic_inside_becomes_internal_with_words_and_void_calls_swallow_it` in src/ffi/mod.rs
 * panic inside exported functions, status-returning and void.
 */

#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "support.h"

/* Every status of the header, and whether this run produced it. */
static struct {
    dtun_status status;
    int reachable;
    int reached;
} statuses[] = {
    {DTUN_OK, 1, 0},
    {DTUN_TIMED_OUT, 1, 0},
    {DTUN_CLOSED, 1, 0},
    {DTUN_SHUT_DOWN, 1, 0},
    {DTUN_ERR_INVALID_ARGUMENT, 1, 0},
    {DTUN_ERR_CONFIG, 1, 0},
    {DTUN_ERR_RESOLVE, 1, 0},
    {DTUN_ERR_CONNECT, 1, 0},
    {DTUN_ERR_TIMEOUT, 1, 0},
    {DTUN_ERR_PROXY_TLS, 1, 0},
    {DTUN_ERR_PROXY_CERT, 1, 0},
    {DTUN_ERR_PROXY_AUTH, 1, 0},
    {DTUN_ERR_PROXY_REFUSED, 1, 0},
    {DTUN_ERR_PROXY_PROTOCOL, 1, 0},
    {DTUN_ERR_COLLECTOR_TLS, 1, 0},
    {DTUN_ERR_COLLECTOR_CERT, 1, 0},
    {DTUN_ERR_IO, 1, 0},
    {DTUN_ERR_INTERNAL, 0, 0}, /* a library bug: see the comment at the top */
};

static void reached(dtun_status status)
{
    size_t i;
    for (i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        if (statuses[i].status == status) {
            statuses[i].reached = 1;
            return;
        }
    }
    test_fail(__FILE__, __LINE__, "status %d is not in the header", (int)status);
}

/* Records a failure status after checking that it came with a message naming `mentions`
 * (when not NULL), and prints it. */
static void expect_failure(const char *what, dtun_status got, dtun_status want,
                           const char *mentions)
{
    const char *message = dtun_last_error();
    if (got != want) {
        test_fail(__FILE__, __LINE__, "%s: got %s, expected %s; dtun_last_error: \"%s\"", what,
                  dtun_status_name(got), dtun_status_name(want), message);
    }
    if (message[0] == '\0') {
        test_fail(__FILE__, __LINE__, "%s: %s without a message", what, dtun_status_name(got));
    }
    if (mentions != NULL && strstr(message, mentions) == NULL) {
        test_fail(__FILE__, __LINE__, "%s: message \"%s\" does not mention \"%s\"", what, message,
                  mentions);
    }
    test_note("%-28s %s: %s", dtun_status_name(got), what, message);
    reached(got);
}

/* Opens DIR/file and expects `want`, with *out untouched. */
static void expect_open_failure(const char *file, int32_t timeout_ms, dtun_status want,
                                const char *mentions)
{
    static unsigned char sentinel;
    dtun_config *config = load_scenario(file);
    dtun_conn *conn = (dtun_conn *)(void *)&sentinel;
    dtun_status got = dtun_open(config, timeout_ms, &conn);
    expect_failure(file, got, want, mentions);
    CHECK(conn == (dtun_conn *)(void *)&sentinel);
    dtun_config_free(config);
}

static double now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        test_fail(__FILE__, __LINE__, "clock_gettime failed");
    }
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void ok_and_timed_out(void)
{
    dtun_conn *conn = open_scenario("direct_tls.yaml");
    uint8_t buf[64];
    size_t n = 1;
    reached(DTUN_OK);
    /* The echo collector says nothing until spoken to: a short recv times out, with
     * nothing received, and the connection stays usable. */
    CHECK_STATUS(dtun_recv(conn, buf, sizeof buf, &n, 200), DTUN_TIMED_OUT);
    CHECK(n == 0);
    test_note("%-28s recv with 200 ms on a silent collector", dtun_status_name(DTUN_TIMED_OUT));
    reached(DTUN_TIMED_OUT);
    echo_check(conn, 100, 7);
    CHECK_OK(dtun_conn_shutdown(conn));
    CHECK_STATUS(dtun_recv(conn, buf, sizeof buf, &n, DTUN_WAIT_FOREVER), DTUN_SHUT_DOWN);
    CHECK(n == 0);
    CHECK(strcmp(dtun_last_error(), "") == 0);
    test_note("%-28s recv after dtun_conn_shutdown", dtun_status_name(DTUN_SHUT_DOWN));
    reached(DTUN_SHUT_DOWN);
    dtun_close(conn);
}

/* A config for the framed collector directly over TLS: it closes the connection (TLS
 * close_notify, then FIN) when a frame has the wrong version. */
static dtun_config *framed_direct(int tls)
{
    dtun_config *config = load_scenario(tls ? "direct_tls.yaml" : "direct_plain.yaml");
    CHECK_OK(dtun_config_set(config, "collector_port", testenv_value("FRAMED_TLS_PORT")));
    return config;
}

static void closed_then_io_over_tls(void)
{
    /* Version 3 instead of 4: the framed collector ends the stream cleanly. */
    static const uint8_t bad_frame[6] = {0, 0, 0, 6, 3, 1};
    static uint8_t chunk[16384];
    dtun_config *config = framed_direct(1);
    dtun_conn *conn = NULL;
    uint8_t buf[64];
    size_t n = 1;
    dtun_status status = DTUN_OK;
    int attempts;

    CHECK_OK(dtun_open(config, TEST_OPEN_TIMEOUT_MS, &conn));
    dtun_config_free(config);
    framed_check(conn, 1, 10);
    send_all(conn, bad_frame, sizeof bad_frame);
    CHECK_STATUS(dtun_recv(conn, buf, sizeof buf, &n, TEST_IO_TIMEOUT_MS), DTUN_CLOSED);
    CHECK(n == 0);
    test_note("%-28s recv after the collector closed the stream cleanly",
              dtun_status_name(DTUN_CLOSED));
    reached(DTUN_CLOSED);
    /* The end of the stream stays the end. */
    CHECK_STATUS(dtun_recv(conn, buf, sizeof buf, &n, TEST_IO_TIMEOUT_MS), DTUN_CLOSED);

    /* The collector's socket is gone: the kernel takes the first bytes sent after that, the
     * peer answers them with a reset, and a later send fails. How many sends the kernel
     * accepts before the reset lands is not fixed, hence a bounded loop rather than "the
     * second send fails". */
    for (attempts = 0; attempts < 1000 && status == DTUN_OK; attempts++) {
        status = dtun_send(conn, chunk, sizeof chunk, &n, TEST_IO_TIMEOUT_MS);
    }
    expect_failure("send after the collector closed (TLS)", status, DTUN_ERR_IO, NULL);
    dtun_close(conn);
}

static void io_over_plain_tcp(void)
{
    static const char not_tls[] = "this is not a TLS ClientHello\r\n\r\n";
    static uint8_t chunk[16384];
    dtun_config *config = framed_direct(0);
    dtun_conn *conn = NULL;
    uint8_t buf[256];
    size_t n = 0;
    dtun_status status;
    int attempts;

    /* Plain TCP to a TLS port: the collector rejects the garbage and drops the connection. */
    CHECK_OK(dtun_open(config, TEST_OPEN_TIMEOUT_MS, &conn));
    dtun_config_free(config);
    send_all(conn, not_tls, sizeof not_tls - 1);
    /* It may first send a TLS alert; then the stream ends (or is reset). */
    do {
        status = dtun_recv(conn, buf, sizeof buf, &n, TEST_IO_TIMEOUT_MS);
    } while (status == DTUN_OK);
    CHECK(status == DTUN_CLOSED || status == DTUN_ERR_IO);
    for (attempts = 0; attempts < 1000 && status != DTUN_ERR_IO; attempts++) {
        status = dtun_send(conn, chunk, sizeof chunk, &n, TEST_IO_TIMEOUT_MS);
        CHECK(status == DTUN_OK || status == DTUN_ERR_IO);
    }
    expect_failure("send after the collector dropped plain TCP", status, DTUN_ERR_IO, NULL);
    dtun_close(conn);
}

static void argument_and_config_errors(void)
{
    static const char bad_port[] = "collector_port: 70000\n";
    dtun_config *config = NULL;
    expect_failure("dtun_config_new(NULL)", dtun_config_new(NULL), DTUN_ERR_INVALID_ARGUMENT,
                   NULL);
    CHECK_OK(dtun_config_new(&config));
    expect_failure("unknown key", dtun_config_set(config, "colector", "x"),
                   DTUN_ERR_INVALID_ARGUMENT, "colector");
    dtun_config_free(config);
    config = NULL;
    expect_failure("port out of range",
                   dtun_config_from_yaml(bad_port, strlen(bad_port), &config), DTUN_ERR_CONFIG,
                   "collector_port");
    CHECK(config == NULL);
}

static void resolve_errors(void)
{
    static unsigned char sentinel;
    dtun_config *config = NULL;
    dtun_conn *conn = (dtun_conn *)(void *)&sentinel;

    /* .invalid never resolves (RFC 6761). */
    CHECK_OK(dtun_config_new(&config));
    CHECK_OK(dtun_config_set(config, "collector", "no-such-host.invalid"));
    CHECK_OK(dtun_config_set(config, "ssl", "false"));
    expect_failure("collector no-such-host.invalid",
                   dtun_open(config, TEST_OPEN_TIMEOUT_MS, &conn), DTUN_ERR_RESOLVE,
                   "no-such-host.invalid");
    CHECK(conn == (dtun_conn *)(void *)&sentinel);

    /* Through a proxy the proxy is the first hop, so its name is the one resolved. */
    CHECK_OK(dtun_config_set(config, "collector", "collector.example"));
    CHECK_OK(dtun_config_set(config, "http_proxy.proxy_host", "no-such-proxy.invalid"));
    CHECK_OK(dtun_config_set(config, "http_proxy.proxy_port", "3128"));
    expect_failure("proxy no-such-proxy.invalid",
                   dtun_open(config, TEST_OPEN_TIMEOUT_MS, &conn), DTUN_ERR_RESOLVE,
                   "no-such-proxy.invalid");
    CHECK(conn == (dtun_conn *)(void *)&sentinel);
    dtun_config_free(config);
}

static void open_timeout(void)
{
    /* The silent proxy accepts CONNECT and never answers: only the deadline ends the open. */
    double start = now_ms();
    double elapsed;
    expect_open_failure("proxy_silent.yaml", 1000, DTUN_ERR_TIMEOUT, NULL);
    elapsed = now_ms() - start;
    test_note("the 1000 ms open ended after %.0f ms", elapsed);
    CHECK(elapsed >= 990.0);
    CHECK(elapsed < 10000.0);
}

static void collector_tls_error(void)
{
    static unsigned char sentinel;
    dtun_config *config = load_scenario("direct_plain.yaml");
    dtun_conn *conn = (dtun_conn *)(void *)&sentinel;
    /* TLS to the plain echo collector: it mirrors our ClientHello back, which is no answer to a
     * TLS client, and the handshake fails before any certificate is seen. */
    CHECK_OK(dtun_config_set(config, "ssl", "true"));
    CHECK_OK(dtun_config_set(config, "ca_certificate", testenv_value("CA")));
    expect_failure("TLS to a plain echo collector", dtun_open(config, TEST_OPEN_TIMEOUT_MS, &conn),
                   DTUN_ERR_COLLECTOR_TLS, NULL);
    CHECK(conn == (dtun_conn *)(void *)&sentinel);
    dtun_config_free(config);
}

int main(void)
{
    size_t i;
    int missed = 0;

    /* Whether a send after a reset raises SIGPIPE is test_sigpipe's subject; this test is
     * about the status, so it ignores the signal as network daemons usually do. */
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
        test_fail(__FILE__, __LINE__, "cannot ignore SIGPIPE");
    }
    ok_and_timed_out();
    closed_then_io_over_tls();
    io_over_plain_tcp();
    argument_and_config_errors();
    resolve_errors();
    expect_open_failure("refused.yaml", TEST_OPEN_TIMEOUT_MS, DTUN_ERR_CONNECT,
                        testenv_value("REFUSED_PORT"));
    open_timeout();
    expect_open_failure("proxy_tls_on_plain_port.yaml", TEST_OPEN_TIMEOUT_MS, DTUN_ERR_PROXY_TLS,
                        NULL);
    expect_open_failure("proxy_cert_untrusted.yaml", TEST_OPEN_TIMEOUT_MS, DTUN_ERR_PROXY_CERT,
                        NULL);
    expect_open_failure("proxy_auth_wrong.yaml", TEST_OPEN_TIMEOUT_MS, DTUN_ERR_PROXY_AUTH, NULL);
    expect_open_failure("proxy_403.yaml", TEST_OPEN_TIMEOUT_MS, DTUN_ERR_PROXY_REFUSED, "403");
    expect_open_failure("proxy_garbage.yaml", TEST_OPEN_TIMEOUT_MS, DTUN_ERR_PROXY_PROTOCOL, NULL);
    collector_tls_error();
    expect_open_failure("collector_untrusted.yaml", TEST_OPEN_TIMEOUT_MS, DTUN_ERR_COLLECTOR_CERT,
                        NULL);
    expect_open_failure("collector_expired.yaml", TEST_OPEN_TIMEOUT_MS, DTUN_ERR_COLLECTOR_CERT,
                        NULL);
    expect_open_failure("collector_wrong_name.yaml", TEST_OPEN_TIMEOUT_MS,
                        DTUN_ERR_COLLECTOR_CERT, NULL);

    for (i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        if (statuses[i].reachable && !statuses[i].reached) {
            fprintf(stderr, "FAIL: no check produced %s\n", dtun_status_name(statuses[i].status));
            missed++;
        }
    }
    if (missed > 0) {
        return 1;
    }
    test_note("every status reachable from C was produced");
    return 0;
}
