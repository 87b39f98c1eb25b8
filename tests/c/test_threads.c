/*
 * Threads, as c-api.md allows them:
 *  - one thread in dtun_send while another is in dtun_recv on the same connection: 8 MiB each
 *    way through TLS to the proxy and TLS to the collector inside, content checked;
 *  - one config shared by several threads opening at the same moment, then freed while the
 *    connections opened from it stay open and in use.
 */

#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

#define DUPLEX_BYTES ((size_t)8 * 1024 * 1024)
#define SHARED_THREADS 4

/* ---- send and recv at once on one connection ---------------------------------------------- */

struct duplex {
    dtun_conn *conn;
    uint32_t seed;
};

static void *duplex_sender(void *arg)
{
    struct duplex *d = (struct duplex *)arg;
    uint8_t *chunk = (uint8_t *)malloc(65536);
    size_t offset = 0;
    size_t size = 1;
    if (chunk == NULL) {
        test_fail(__FILE__, __LINE__, "out of memory");
    }
    while (offset < DUPLEX_BYTES) {
        size_t len = size < DUPLEX_BYTES - offset ? size : DUPLEX_BYTES - offset;
        size_t i;
        for (i = 0; i < len; i++) {
            chunk[i] = pattern_byte(d->seed, offset + i);
        }
        send_all(d->conn, chunk, len);
        offset += len;
        /* Chunk sizes from 1 byte to 64 KiB, not aligned to TLS records or buffers. */
        size = size * 3 + 7;
        if (size > 65536) {
            size = size % 65536 + 1;
        }
    }
    free(chunk);
    return NULL;
}

static void *duplex_receiver(void *arg)
{
    struct duplex *d = (struct duplex *)arg;
    uint8_t *buf = (uint8_t *)malloc(100000);
    size_t offset = 0;
    if (buf == NULL) {
        test_fail(__FILE__, __LINE__, "out of memory");
    }
    while (offset < DUPLEX_BYTES) {
        size_t got = 0;
        size_t i;
        size_t want = DUPLEX_BYTES - offset < 100000 ? DUPLEX_BYTES - offset : 100000;
        CHECK_OK(dtun_recv(d->conn, buf, want, &got, TEST_IO_TIMEOUT_MS));
        CHECK(got > 0 && got <= want);
        for (i = 0; i < got; i++) {
            if (buf[i] != pattern_byte(d->seed, offset + i)) {
                test_fail(__FILE__, __LINE__, "byte %zu came back as 0x%02x, sent 0x%02x",
                          offset + i, buf[i], pattern_byte(d->seed, offset + i));
            }
        }
        offset += got;
    }
    free(buf);
    return NULL;
}

static void send_and_recv_threads(void)
{
    struct duplex d;
    pthread_t sender;
    pthread_t receiver;
    d.conn = open_scenario("proxy_tls.yaml");
    d.seed = 42;
    /* Both directions at once: the echo collector only reads while its replies are read, so a
     * single thread doing both would stall; this needs the two halves to be independent. */
    CHECK(pthread_create(&receiver, NULL, duplex_receiver, &d) == 0);
    CHECK(pthread_create(&sender, NULL, duplex_sender, &d) == 0);
    CHECK(pthread_join(sender, NULL) == 0);
    CHECK(pthread_join(receiver, NULL) == 0);
    /* Both threads are done: the connection is ours alone again and can be closed. */
    dtun_close(d.conn);
    test_note("%zu bytes each way with a send thread and a recv thread", DUPLEX_BYTES);
}

/* ---- one config, several threads ---------------------------------------------------------- */

struct opener {
    const dtun_config *config;
    pthread_barrier_t *start;
    uint32_t seed;
    dtun_conn *conn;
};

static void *open_and_echo(void *arg)
{
    struct opener *o = (struct opener *)arg;
    int rc = pthread_barrier_wait(o->start);
    CHECK(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD);
    CHECK_OK(dtun_open(o->config, TEST_OPEN_TIMEOUT_MS, &o->conn));
    echo_check(o->conn, 65536, o->seed);
    return NULL;
}

static void *echo_and_close(void *arg)
{
    struct opener *o = (struct opener *)arg;
    echo_check(o->conn, 65536, o->seed + 1000);
    dtun_close(o->conn);
    return NULL;
}

static void shared_config(void)
{
    struct opener openers[SHARED_THREADS];
    pthread_t threads[SHARED_THREADS];
    pthread_barrier_t start;
    dtun_config *config = load_scenario("proxy_tls_auth.yaml");
    int i;

    CHECK(pthread_barrier_init(&start, NULL, SHARED_THREADS) == 0);
    for (i = 0; i < SHARED_THREADS; i++) {
        openers[i].config = config;
        openers[i].start = &start;
        openers[i].seed = (uint32_t)(100 + i);
        openers[i].conn = NULL;
        CHECK(pthread_create(&threads[i], NULL, open_and_echo, &openers[i]) == 0);
    }
    for (i = 0; i < SHARED_THREADS; i++) {
        CHECK(pthread_join(threads[i], NULL) == 0);
        CHECK(openers[i].conn != NULL);
    }
    CHECK(pthread_barrier_destroy(&start) == 0);

    /* The config goes; the connections opened from it stay usable, from other threads too. */
    dtun_config_free(config);
    for (i = 0; i < SHARED_THREADS; i++) {
        CHECK(pthread_create(&threads[i], NULL, echo_and_close, &openers[i]) == 0);
    }
    for (i = 0; i < SHARED_THREADS; i++) {
        CHECK(pthread_join(threads[i], NULL) == 0);
    }
    test_note("%d threads opened with one config, used their tunnels after it was freed",
              SHARED_THREADS);
}

int main(void)
{
    send_and_recv_threads();
    shared_config();
    test_note("thread checks passed");
    return 0;
}
