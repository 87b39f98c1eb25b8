/*
 * The logger callback as agents write it (issue 10):
 *  - a callback that calls back into the library (dtun_config_*, dtun_open/send/recv/close,
 *    dtun_set_logger to replace itself) neither deadlocks nor corrupts state;
 *  - a callback that blocks does not stall another thread's I/O: thread A's callback waits
 *    until thread B has echoed through its own connection. If records were delivered while A
 *    drives the library's I/O, B could not finish and the test fails on B's I/O timeout.
 */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "support.h"

/* ---- re-entry --------------------------------------------------------------------------- */

static int reentrant_calls;
static int second_calls;

static void second_logger(void *userdata, dtun_log_level level, const char *message)
{
    (void)userdata;
    (void)level;
    (void)message;
    __atomic_add_fetch(&second_calls, 1, __ATOMIC_SEQ_CST);
}

static void reentrant_logger(void *userdata, dtun_log_level level, const char *message)
{
    dtun_config *cfg = NULL;
    dtun_conn *conn = NULL;
    (void)level;
    (void)message;
    if (__atomic_add_fetch(&reentrant_calls, 1, __ATOMIC_SEQ_CST) != 1) {
        return;
    }
    /* The whole API from inside the callback. */
    CHECK_OK(dtun_config_new(&cfg));
    CHECK_STATUS(dtun_config_set(cfg, "collector_port", "70000"), DTUN_ERR_CONFIG);
    dtun_config_free(cfg);
    CHECK_OK(dtun_open((const dtun_config *)userdata, TEST_OPEN_TIMEOUT_MS, &conn));
    echo_check(conn, 20000, 11);
    dtun_close(conn);
    /* Replacing itself from inside itself: must not wait for its own call to end. */
    dtun_set_logger(second_logger, NULL, DTUN_LOG_TRACE);
}

static void test_reentry(void)
{
    dtun_config *cfg = load_scenario("proxy_tls_auth.yaml");
    dtun_conn *conn = NULL;
    dtun_set_logger(reentrant_logger, cfg, DTUN_LOG_TRACE);
    CHECK_OK(dtun_open(cfg, TEST_OPEN_TIMEOUT_MS, &conn));
    CHECK(__atomic_load_n(&reentrant_calls, __ATOMIC_SEQ_CST) == 1);
    /* The replacement is installed and receives what follows. */
    echo_check(conn, 1000, 12);
    dtun_close(conn);
    CHECK(__atomic_load_n(&second_calls, __ATOMIC_SEQ_CST) > 0);
    dtun_set_logger(NULL, NULL, DTUN_LOG_ERROR);
    CHECK(__atomic_load_n(&reentrant_calls, __ATOMIC_SEQ_CST) == 1);
    dtun_config_free(cfg);
    test_note("callback re-entered open/echo/close/config and replaced itself");
}

/* ---- a blocking callback ---------------------------------------------------------------- */

struct slow {
    pthread_t opener;
    int opener_known;
    int opener_in_callback;
    int other_done;
    int gave_up;
    pthread_mutex_t lock;
    pthread_cond_t changed;
};

static struct slow slow = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .changed = PTHREAD_COND_INITIALIZER,
};

static void slow_logger(void *userdata, dtun_log_level level, const char *message)
{
    struct timespec deadline;
    (void)userdata;
    (void)level;
    (void)message;
    pthread_mutex_lock(&slow.lock);
    if (!slow.opener_known || !pthread_equal(pthread_self(), slow.opener) ||
        slow.opener_in_callback) {
        pthread_mutex_unlock(&slow.lock);
        return;
    }
    slow.opener_in_callback = 1;
    pthread_cond_broadcast(&slow.changed);
    /* Blocks until the other thread has done its I/O; bounded well past that thread's own I/O
     * timeout, so a stall shows as the other thread's failure. */
    (void)clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 2 * TEST_IO_TIMEOUT_MS / 1000;
    while (!slow.other_done) {
        if (pthread_cond_timedwait(&slow.changed, &slow.lock, &deadline) == ETIMEDOUT) {
            slow.gave_up = 1;
            break;
        }
    }
    pthread_mutex_unlock(&slow.lock);
}

static void *slow_opener(void *arg)
{
    dtun_conn *conn = NULL;
    CHECK_OK(dtun_open((const dtun_config *)arg, TEST_OPEN_TIMEOUT_MS, &conn));
    dtun_close(conn);
    return NULL;
}

static void test_blocking_callback(void)
{
    dtun_config *cfg = load_scenario("proxy_tls_auth.yaml");
    dtun_conn *other = NULL;
    struct timespec deadline;
    CHECK_OK(dtun_open(cfg, TEST_OPEN_TIMEOUT_MS, &other));
    echo_check(other, 1000, 20);
    /* DEBUG: the open's stage records are made while the opener is inside the library's I/O. */
    dtun_set_logger(slow_logger, NULL, DTUN_LOG_DEBUG);
    pthread_mutex_lock(&slow.lock);
    CHECK(pthread_create(&slow.opener, NULL, slow_opener, cfg) == 0);
    slow.opener_known = 1;
    (void)clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += TEST_OPEN_TIMEOUT_MS / 1000;
    while (!slow.opener_in_callback) {
        if (pthread_cond_timedwait(&slow.changed, &slow.lock, &deadline) == ETIMEDOUT) {
            test_fail(__FILE__, __LINE__, "the opener's callback was never called");
        }
    }
    pthread_mutex_unlock(&slow.lock);
    /* The opener is inside its callback now; this thread's I/O must go on regardless. */
    echo_check(other, 300000, 21);
    pthread_mutex_lock(&slow.lock);
    slow.other_done = 1;
    pthread_cond_broadcast(&slow.changed);
    pthread_mutex_unlock(&slow.lock);
    CHECK(pthread_join(slow.opener, NULL) == 0);
    CHECK(!slow.gave_up);
    dtun_set_logger(NULL, NULL, DTUN_LOG_ERROR);
    dtun_close(other);
    dtun_config_free(cfg);
    test_note("a blocked callback on one thread did not stall another thread's echo");
}

int main(void)
{
    test_reentry();
    test_blocking_callback();
    printf("callback tests passed\n");
    return 0;
}
