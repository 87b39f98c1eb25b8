/*
 * A library call must never kill its host process. When the collector has gone away, writing
 * to its socket fails with EPIPE, and unless the write asks otherwise (MSG_NOSIGNAL) the
 * kernel also sends SIGPIPE, whose default action ends the process. This test leaves SIGPIPE
 * at its default, as a C or C++ agent may, and sends and closes on TLS and plain tunnels whose
 * collector is gone: each call must return (DTUN_ERR_IO for the sends), and the process must
 * live. If the test ends with exit status 141 (128 + SIGPIPE) and no FAIL line, the library
 * raised SIGPIPE in the step announced last.
 */

#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdio.h>

#include "support.h"

/* Opens a tunnel straight to the framed collector and makes it close the connection: it ends
 * the stream (TLS close_notify, FIN) when a frame has the wrong version, then closes its
 * socket, so the kernel answers anything sent afterwards with a reset. */
static dtun_conn *open_and_get_closed_on(int tls)
{
    static const uint8_t bad_frame[6] = {0, 0, 0, 6, 3, 1};
    static const char not_tls[] = "not TLS\r\n\r\n";
    dtun_config *config = load_scenario(tls ? "direct_tls.yaml" : "direct_plain.yaml");
    dtun_conn *conn = NULL;
    uint8_t buf[256];
    size_t n = 0;
    dtun_status status;
    CHECK_OK(dtun_config_set(config, "collector_port", testenv_value("FRAMED_TLS_PORT")));
    CHECK_OK(dtun_open(config, TEST_OPEN_TIMEOUT_MS, &conn));
    dtun_config_free(config);
    if (tls) {
        send_all(conn, bad_frame, sizeof bad_frame);
    } else {
        /* Plain bytes to a TLS port: the collector's handshake fails and it hangs up. */
        send_all(conn, not_tls, sizeof not_tls - 1);
    }
    do {
        status = dtun_recv(conn, buf, sizeof buf, &n, TEST_IO_TIMEOUT_MS);
    } while (status == DTUN_OK);
    CHECK(status == DTUN_CLOSED || status == DTUN_ERR_IO);
    return conn;
}

static void send_until_io_error(dtun_conn *conn, const char *what)
{
    static uint8_t chunk[16384];
    dtun_status status = DTUN_OK;
    size_t n = 0;
    int attempts;
    test_note("%s: sending after the collector went away (SIGPIPE would end the test here)",
              what);
    /* The kernel takes the first bytes after the peer's close; the reset they provoke makes
     * a later write fail. How many writes that takes is not fixed: a bounded loop. */
    for (attempts = 0; attempts < 1000 && status == DTUN_OK; attempts++) {
        status = dtun_send(conn, chunk, sizeof chunk, &n, TEST_IO_TIMEOUT_MS);
    }
    CHECK_STATUS(status, DTUN_ERR_IO);
    test_note("%s: send returned %s: %s", what, dtun_status_name(status), dtun_last_error());
    /* A second failing send, and the close that follows, write to a broken socket too. */
    CHECK_STATUS(dtun_send(conn, chunk, sizeof chunk, &n, TEST_IO_TIMEOUT_MS), DTUN_ERR_IO);
    test_note("%s: closing the broken tunnel (SIGPIPE would end the test here)", what);
    dtun_close(conn);
}

int main(void)
{
    /* The default action, whatever the environment set: that is the case under test. */
    if (signal(SIGPIPE, SIG_DFL) == SIG_ERR) {
        test_fail(__FILE__, __LINE__, "cannot reset SIGPIPE to its default action");
    }
    send_until_io_error(open_and_get_closed_on(0), "plain TCP");
    send_until_io_error(open_and_get_closed_on(1), "TLS");
    test_note("no library call raised SIGPIPE");
    return 0;
}
