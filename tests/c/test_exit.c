/*
 * Process and thread exit (issue 10): every dtun_ function works, or returns a status, at any
 * point of exit; none aborts. Run as
 *
 *   test_exit atexit          tunnels used, closed and configs freed from an atexit handler
 *                             (after the main thread's thread-local storage is torn down)
 *   test_exit thread-key      the same from a pthread key destructor of an exiting thread
 *   test_exit leave-open      main returns with tunnels and configs still open
 *
 * ctest checks the exit status (0) and the lines printed at the end of each path, so a path
 * that aborts, hangs or is skipped fails.
 */

#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

static dtun_config *exit_cfg;
static dtun_conn *exit_conn;

/* What a tidy agent does on its way out: use the tunnel once more, close it, free the config,
 * and open (and close) one more tunnel: each must work or fail with a status. */
static void tidy_up(const char *where)
{
    dtun_conn *late = NULL;
    dtun_status st;
    echo_check(exit_conn, 100000, 7);
    dtun_close(exit_conn);
    exit_conn = NULL;
    CHECK(strcmp(dtun_last_error(), "") == 0);
    st = dtun_open(exit_cfg, TEST_OPEN_TIMEOUT_MS, &late);
    CHECK(st == DTUN_OK);
    CHECK(dtun_last_error() != NULL);
    echo_check(late, 1000, 8);
    dtun_close(late);
    /* A failing call: a status and words (or the documented fallback), no abort. */
    st = dtun_config_set(exit_cfg, "no_such_key", "1");
    CHECK(st == DTUN_ERR_INVALID_ARGUMENT);
    CHECK(strlen(dtun_last_error()) > 0);
    dtun_config_free(exit_cfg);
    exit_cfg = NULL;
    dtun_set_logger(NULL, NULL, DTUN_LOG_ERROR);
    printf("%s: tunnel echoed, closed, reopened, config freed\n", where);
    (void)fflush(stdout);
}

static void at_exit(void)
{
    tidy_up("atexit");
}

static void key_destructor(void *value)
{
    (void)value;
    tidy_up("thread key destructor");
}

static void *exiting_thread(void *arg)
{
    pthread_key_t key = *(pthread_key_t *)arg;
    /* The library's thread-locals come to life after the key's value is set, so they are torn
     * down first, as with a thread_local object made before the tunnel. */
    CHECK(pthread_setspecific(key, &key) == 0);
    exit_cfg = load_scenario("direct_tls.yaml");
    CHECK_OK(dtun_open(exit_cfg, TEST_OPEN_TIMEOUT_MS, &exit_conn));
    echo_check(exit_conn, 1000, 6);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        (void)fprintf(stderr, "usage: test_exit atexit|thread-key|leave-open\n");
        return 2;
    }
    if (strcmp(argv[1], "atexit") == 0) {
        exit_cfg = load_scenario("proxy_tls_auth.yaml");
        CHECK_OK(dtun_open(exit_cfg, TEST_OPEN_TIMEOUT_MS, &exit_conn));
        echo_check(exit_conn, 1000, 5);
        CHECK(atexit(at_exit) == 0);
        test_note("main returns; the atexit handler tidies up");
        return 0;
    }
    if (strcmp(argv[1], "thread-key") == 0) {
        pthread_key_t key;
        pthread_t thread;
        CHECK(pthread_key_create(&key, key_destructor) == 0);
        CHECK(pthread_create(&thread, NULL, exiting_thread, &key) == 0);
        CHECK(pthread_join(thread, NULL) == 0);
        CHECK(exit_conn == NULL && exit_cfg == NULL);
        printf("thread exited\n");
        return 0;
    }
    if (strcmp(argv[1], "leave-open") == 0) {
        dtun_config *cfg = load_scenario("proxy_tls_auth.yaml");
        dtun_conn *a = NULL;
        dtun_conn *b = NULL;
        CHECK_OK(dtun_open(cfg, TEST_OPEN_TIMEOUT_MS, &a));
        CHECK_OK(dtun_open(cfg, TEST_OPEN_TIMEOUT_MS, &b));
        echo_check(a, 1000, 1);
        printf("returning from main with 2 tunnels open\n");
        return 0;
    }
    (void)fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
