/*
 * Waits that end when they should (issue 11, section 1), through the C API:
 *  - dtun_conn_shutdown wakes a reader parked in dtun_recv(DTUN_WAIT_FOREVER) and a writer
 *    blocked in dtun_send(DTUN_WAIT_FOREVER) on a full socket, at once, with DTUN_SHUT_DOWN;
 *    every later send/recv returns DTUN_SHUT_DOWN; dtun_close then frees the connection;
 *  - a dtun_recv with a timeout, started while another thread is in dtun_recv(FOREVER) on the
 *    same connection, returns DTUN_TIMED_OUT on its own (it does not wait for the other).
 * Each thread is seen blocked (through /proc) before it is woken; alarm() turns a wait that
 * never ends into a failure.
 */

#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support.h"

#define BIG ((size_t)64 * 1024 * 1024)

struct caller {
    dtun_conn *conn;
    long tid;
    int ready; /* set (under lock) just before the blocking call */
    dtun_status status;
    size_t count;
    pthread_mutex_t lock;
    pthread_cond_t changed;
};

static void caller_init(struct caller *c, dtun_conn *conn)
{
    memset(c, 0, sizeof *c);
    c->conn = conn;
    CHECK(pthread_mutex_init(&c->lock, NULL) == 0);
    CHECK(pthread_cond_init(&c->changed, NULL) == 0);
}

static void announce(struct caller *c)
{
    pthread_mutex_lock(&c->lock);
    c->tid = current_tid();
    c->ready = 1;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
}

static long await_ready(struct caller *c)
{
    long tid;
    pthread_mutex_lock(&c->lock);
    while (!c->ready) {
        pthread_cond_wait(&c->changed, &c->lock);
    }
    tid = c->tid;
    pthread_mutex_unlock(&c->lock);
    return tid;
}

static void *parked_reader(void *arg)
{
    struct caller *c = (struct caller *)arg;
    uint8_t buf[256];
    announce(c);
    c->status = dtun_recv(c->conn, buf, sizeof buf, &c->count, DTUN_WAIT_FOREVER);
    return NULL;
}

static void *blocked_writer(void *arg)
{
    struct caller *c = (struct caller *)arg;
    uint8_t *buf = (uint8_t *)calloc(1, BIG);
    size_t sent = 0;
    dtun_status status;
    CHECK(buf != NULL);
    /* Nobody reads the echoes: the collector stops reading, and the socket fills. A send
     * times out once it does; it may still have accepted every byte (queued inside TLS, as
     * the header says), so the status tells, not the count. */
    do {
        status = dtun_send(c->conn, buf, 1 << 20, &sent, 100);
        CHECK(status == DTUN_OK || status == DTUN_TIMED_OUT);
        CHECK(sent <= (1u << 20));
        CHECK(status == DTUN_TIMED_OUT || sent == (1u << 20));
    } while (status == DTUN_OK);
    announce(c);
    c->status = dtun_send(c->conn, buf, BIG, &c->count, DTUN_WAIT_FOREVER);
    free(buf);
    return NULL;
}

static void test_shutdown_wakes_reader_and_writer(void)
{
    dtun_config *cfg = load_scenario("proxy_tls_auth.yaml");
    dtun_conn *read_side = NULL;
    dtun_conn *write_side = NULL;
    struct caller reader;
    struct caller writer;
    pthread_t r;
    pthread_t w;
    uint8_t byte = 1;
    size_t n = 77;

    CHECK_OK(dtun_open(cfg, TEST_OPEN_TIMEOUT_MS, &read_side));
    CHECK_OK(dtun_open(cfg, TEST_OPEN_TIMEOUT_MS, &write_side));
    caller_init(&reader, read_side);
    caller_init(&writer, write_side);
    CHECK(pthread_create(&r, NULL, parked_reader, &reader) == 0);
    CHECK(pthread_create(&w, NULL, blocked_writer, &writer) == 0);
    wait_until_blocked(await_ready(&reader), 1);
    wait_until_blocked(await_ready(&writer), 1);
    test_note("reader parked, writer blocked on a full socket: shutting both down");

    CHECK_OK(dtun_conn_shutdown(read_side));
    CHECK_OK(dtun_conn_shutdown(write_side));
    CHECK(pthread_join(r, NULL) == 0);
    CHECK(pthread_join(w, NULL) == 0);
    CHECK(reader.status == DTUN_SHUT_DOWN && reader.count == 0);
    CHECK(writer.status == DTUN_SHUT_DOWN && writer.count < BIG);
    CHECK(strcmp(dtun_status_name(DTUN_SHUT_DOWN), "DTUN_SHUT_DOWN") == 0);

    /* Every later call says the same, at once; a second shutdown is fine. */
    CHECK_STATUS(dtun_recv(read_side, &byte, 1, &n, DTUN_WAIT_FOREVER), DTUN_SHUT_DOWN);
    CHECK(n == 0);
    CHECK_STATUS(dtun_send(read_side, &byte, 1, &n, DTUN_WAIT_FOREVER), DTUN_SHUT_DOWN);
    CHECK(n == 0);
    CHECK_STATUS(dtun_send(write_side, &byte, 1, &n, DTUN_WAIT_FOREVER), DTUN_SHUT_DOWN);
    CHECK_OK(dtun_conn_shutdown(read_side));
    CHECK_STATUS(dtun_conn_shutdown(NULL), DTUN_ERR_INVALID_ARGUMENT);
    dtun_close(read_side);
    dtun_close(write_side);
    dtun_config_free(cfg);
    test_note("shut down: both woken with DTUN_SHUT_DOWN, closed");
}

static void test_second_receiver_keeps_its_timeout(void)
{
    dtun_config *cfg = load_scenario("direct_tls.yaml");
    dtun_conn *conn = NULL;
    struct caller reader;
    pthread_t r;
    uint8_t buf[16];
    size_t n = 5;

    CHECK_OK(dtun_open(cfg, TEST_OPEN_TIMEOUT_MS, &conn));
    caller_init(&reader, conn);
    CHECK(pthread_create(&r, NULL, parked_reader, &reader) == 0);
    wait_until_blocked(await_ready(&reader), 0);
    /* Must come back on its own timeout, not when the other receiver does. */
    CHECK_STATUS(dtun_recv(conn, buf, sizeof buf, &n, 200), DTUN_TIMED_OUT);
    CHECK(n == 0);
    /* The parked reader still gets the echo of this byte. */
    send_all(conn, "x", 1);
    CHECK(pthread_join(r, NULL) == 0);
    CHECK(reader.status == DTUN_OK && reader.count == 1);
    echo_check(conn, 10000, 3);
    dtun_close(conn);
    dtun_config_free(cfg);
    test_note("a second receiver timed out on its own while the first stayed parked");
}

int main(void)
{
    /* A wait that never ends fails the test (SIGALRM) instead of ctest's timeout. */
    (void)alarm(120);
    test_shutdown_wakes_reader_and_writer();
    test_second_receiver_keeps_its_timeout();
    printf("shutdown tests passed\n");
    return 0;
}
