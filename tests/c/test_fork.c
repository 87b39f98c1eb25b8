/*
 * fork() (issue 10): a child of an agent process that uses the library.
 *
 * The parent opens a tunnel (resolving the collector's name) and parks a reader thread in
 * dtun_recv(DTUN_WAIT_FOREVER) on it, then forks while that thread is blocked inside the
 * library. The child must: be refused the parent's connection and config with
 * DTUN_ERR_INVALID_ARGUMENT and a message naming fork; free them without touching the
 * parent's sockets; open new tunnels of its own (direct and through the TLS proxy, names
 * resolved again) within their deadline; echo through them; exit. The parent must then still
 * be served: its parked reader receives what the main thread sends, and the tunnel keeps
 * echoing, so the child's close did not remove the parent's epoll registration.
 */

#define _GNU_SOURCE

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support.h"

#define PARKED_BYTES 4096
#define CHILD_OPEN_TIMEOUT_MS 10000
#define FORKS_UNDER_CHURN 200

struct parked {
    dtun_conn *conn;
    long tid;
    int started;
    int done;
    uint8_t buf[PARKED_BYTES];
    size_t got;
    pthread_mutex_t lock;
    pthread_cond_t changed;
};

static void *parked_reader(void *arg)
{
    struct parked *p = (struct parked *)arg;
    pthread_mutex_lock(&p->lock);
    p->tid = current_tid();
    p->started = 1;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->lock);
    while (p->got < PARKED_BYTES) {
        size_t n = 0;
        CHECK_OK(dtun_recv(p->conn, p->buf + p->got, PARKED_BYTES - p->got, &n,
                           DTUN_WAIT_FOREVER));
        p->got += n;
    }
    pthread_mutex_lock(&p->lock);
    p->done = 1;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static void wait_until_parked(struct parked *p)
{
    pthread_mutex_lock(&p->lock);
    while (!p->started) {
        pthread_cond_wait(&p->changed, &p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    /* Alone in the library, the reader drives its own socket: it sleeps in epoll_wait. */
    wait_until_blocked((long)p->tid, 0);
}

static int in_child(dtun_conn *inherited, dtun_config *inherited_cfg)
{
    dtun_status st;
    size_t n = 99;
    uint8_t byte = 0;
    dtun_conn *mine = NULL;
    dtun_config *cfg;
    const char *scenarios[] = {"direct_tls.yaml", "proxy_tls_auth.yaml"};
    size_t i;

    /* A hang is a failure of its own, not a ctest timeout. */
    (void)alarm(60);
    st = dtun_recv(inherited, &byte, 1, &n, 0);
    CHECK(st == DTUN_ERR_INVALID_ARGUMENT);
    CHECK(strstr(dtun_last_error(), "fork") != NULL);
    st = dtun_send(inherited, &byte, 1, &n, 0);
    CHECK(st == DTUN_ERR_INVALID_ARGUMENT);
    st = dtun_open(inherited_cfg, CHILD_OPEN_TIMEOUT_MS, &mine);
    CHECK(st == DTUN_ERR_INVALID_ARGUMENT);
    CHECK(mine == NULL);
    CHECK(strstr(dtun_last_error(), "fork") != NULL);
    /* Freed here: forgotten, never closed, so the parent's socket and TLS state stay as they
     * are. A second close is refused quietly. */
    dtun_close(inherited);
    dtun_close(inherited);
    dtun_config_free(inherited_cfg);

    for (i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
        cfg = load_scenario(scenarios[i]);
        CHECK_OK(dtun_open(cfg, CHILD_OPEN_TIMEOUT_MS, &mine));
        echo_check(mine, 200000, (uint32_t)(40 + i));
        dtun_close(mine);
        dtun_config_free(cfg);
    }
    test_note("child: parent's handles refused, two tunnels of its own echoed");
    return 0;
}

/* ---- forks while another thread holds the library's process-wide locks --------------------- */

static int churn_stop;

static void quiet_logger(void *userdata, dtun_log_level level, const char *message)
{
    (void)userdata;
    (void)level;
    (void)message;
}

/* Takes the logger's lock over and over: a fork that copied it held by this thread would
 * leave the child waiting for ever at its first record or dtun_set_logger. */
static void *churn(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&churn_stop, __ATOMIC_SEQ_CST)) {
        dtun_set_logger(quiet_logger, NULL, DTUN_LOG_TRACE);
        dtun_set_logger(NULL, NULL, DTUN_LOG_ERROR);
    }
    return NULL;
}

static void test_forks_under_lock_churn(void)
{
    pthread_t churner;
    int i;
    CHECK(pthread_create(&churner, NULL, churn, NULL) == 0);
    for (i = 0; i < FORKS_UNDER_CHURN; i++) {
        int status = 0;
        pid_t child;
        (void)fflush(NULL);
        child = fork();
        CHECK(child >= 0);
        if (child == 0) {
            dtun_config *cfg;
            dtun_conn *conn = NULL;
            (void)alarm(30);
            dtun_set_logger(quiet_logger, NULL, DTUN_LOG_TRACE);
            cfg = load_scenario("direct_tls.yaml");
            if (i % 20 == 0) {
                CHECK_OK(dtun_open(cfg, CHILD_OPEN_TIMEOUT_MS, &conn));
                echo_check(conn, 1000, 50);
                dtun_close(conn);
            }
            dtun_config_free(cfg);
            dtun_set_logger(NULL, NULL, DTUN_LOG_ERROR);
            _exit(0);
        }
        CHECK(waitpid(child, &status, 0) == child);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            test_fail(__FILE__, __LINE__, "fork %d: the child failed (wait status %d)", i,
                      status);
        }
    }
    __atomic_store_n(&churn_stop, 1, __ATOMIC_SEQ_CST);
    CHECK(pthread_join(churner, NULL) == 0);
    test_note("%d forks while another thread churned the logger's lock", FORKS_UNDER_CHURN);
}

int main(void)
{
    struct parked p;
    pthread_t reader;
    dtun_config *cfg = load_scenario("direct_tls.yaml");
    dtun_conn *conn = NULL;
    uint8_t out[PARKED_BYTES];
    pid_t child;
    int status = 0;
    size_t i;
    struct timespec deadline;

    CHECK_OK(dtun_open(cfg, TEST_OPEN_TIMEOUT_MS, &conn));
    echo_check(conn, 10000, 1);

    memset(&p, 0, sizeof p);
    p.conn = conn;
    CHECK(pthread_mutex_init(&p.lock, NULL) == 0);
    CHECK(pthread_cond_init(&p.changed, NULL) == 0);
    CHECK(pthread_create(&reader, NULL, parked_reader, &p) == 0);
    wait_until_parked(&p);
    test_note("reader parked in dtun_recv; forking");

    (void)fflush(NULL);
    child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        /* exit, not _exit: the child's exit path runs through the library's too. */
        exit(in_child(conn, cfg));
    }
    CHECK(waitpid(child, &status, 0) == child);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        test_fail(__FILE__, __LINE__, "the child failed (wait status %d)", status);
    }

    /* The parent: its parked reader gets these bytes (echoed), and the tunnel goes on. */
    for (i = 0; i < PARKED_BYTES; i++) {
        out[i] = pattern_byte(9, i);
    }
    send_all(conn, out, PARKED_BYTES);
    CHECK(clock_gettime(CLOCK_REALTIME, &deadline) == 0);
    deadline.tv_sec += 30;
    pthread_mutex_lock(&p.lock);
    while (!p.done) {
        if (pthread_cond_timedwait(&p.changed, &p.lock, &deadline) == ETIMEDOUT) {
            test_fail(__FILE__, __LINE__,
                      "the parent's parked reader got %zu of %d bytes after the child exited",
                      p.got, PARKED_BYTES);
        }
    }
    pthread_mutex_unlock(&p.lock);
    CHECK(pthread_join(reader, NULL) == 0);
    CHECK(memcmp(p.buf, out, PARKED_BYTES) == 0);
    echo_check(conn, 300000, 2);
    dtun_close(conn);
    dtun_config_free(cfg);
    test_note("parent: parked reader served, tunnel still echoing after the child");
    test_forks_under_lock_churn();
    printf("fork test passed\n");
    return 0;
}
