/*
 * The logger: records arrive (the INFO route line after an open), filtered by level, with the
 * application's userdata; no record and no dtun_last_error() ever holds the proxy password or
 * the Proxy-Authorization value, even at TRACE and on a failed authentication; and once
 * dtun_set_logger(NULL, ...) has returned, the callback is never called again, even while
 * another thread is busy in the library.
 */

#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "support.h"

#define MAX_SECRETS 8

/* What the callback saw. The callback runs on any thread, so everything is under `lock`,
 * except the two flags of the unset check, which are atomics read without it. */
struct log_state {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    unsigned per_level[DTUN_LOG_TRACE + 1];
    unsigned total;
    unsigned bad_level;
    unsigned bad_userdata;
    /* An INFO record containing this text (":port" of the collector) was seen. */
    char route_needle[32];
    int saw_route;
    /* Texts that must never appear, and the first record that held one. */
    char secrets[MAX_SECRETS][256];
    size_t n_secrets;
    char leak[1024];
    atomic_int unset_returned;
    atomic_int calls_after_unset;
};

static struct log_state state = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .changed = PTHREAD_COND_INITIALIZER,
};

static void lock(void)
{
    if (pthread_mutex_lock(&state.lock) != 0) {
        test_fail(__FILE__, __LINE__, "pthread_mutex_lock failed");
    }
}

static void unlock(void)
{
    if (pthread_mutex_unlock(&state.lock) != 0) {
        test_fail(__FILE__, __LINE__, "pthread_mutex_unlock failed");
    }
}

static void on_log(void *userdata, dtun_log_level level, const char *message)
{
    size_t i;
    if (atomic_load(&state.unset_returned)) {
        atomic_fetch_add(&state.calls_after_unset, 1);
    }
    lock();
    if (userdata != (void *)&state) {
        state.bad_userdata++;
    }
    if (level >= DTUN_LOG_ERROR && level <= DTUN_LOG_TRACE) {
        state.per_level[level]++;
    } else {
        state.bad_level++;
    }
    state.total++;
    if (level == DTUN_LOG_INFO && state.route_needle[0] != '\0' &&
        strstr(message, state.route_needle) != NULL) {
        state.saw_route = 1;
    }
    for (i = 0; i < state.n_secrets; i++) {
        if (state.leak[0] == '\0' && strstr(message, state.secrets[i]) != NULL) {
            (void)snprintf(state.leak, sizeof state.leak, "%s", message);
        }
    }
    if (pthread_cond_broadcast(&state.changed) != 0) {
        test_fail(__FILE__, __LINE__, "pthread_cond_broadcast failed");
    }
    unlock();
}

static void reset_counts(void)
{
    lock();
    memset(state.per_level, 0, sizeof state.per_level);
    state.total = 0;
    state.saw_route = 0;
    unlock();
}

static void add_secret(const char *secret)
{
    CHECK(state.n_secrets < MAX_SECRETS);
    CHECK(strlen(secret) < sizeof state.secrets[0]);
    memcpy(state.secrets[state.n_secrets], secret, strlen(secret) + 1);
    state.n_secrets++;
}

/* The password, and the Base64 forms a Proxy-Authorization header or a careless encoder
 * would produce. */
static void add_password(const char *user, const char *password)
{
    char user_pass[256];
    char encoded[512];
    int n = snprintf(user_pass, sizeof user_pass, "%s:%s", user, password);
    CHECK(n > 0 && (size_t)n < sizeof user_pass);
    add_secret(password);
    base64_encode(user_pass, (size_t)n, encoded, sizeof encoded);
    add_secret(encoded);
    base64_encode(password, strlen(password), encoded, sizeof encoded);
    add_secret(encoded);
}

static void check_no_leak(const char *text, const char *where)
{
    size_t i;
    for (i = 0; i < state.n_secrets; i++) {
        if (strstr(text, state.secrets[i]) != NULL) {
            test_fail(__FILE__, __LINE__, "%s holds a secret: \"%s\"", where, text);
        }
    }
}

static void check_no_leak_in_records(void)
{
    lock();
    if (state.leak[0] != '\0') {
        test_fail(__FILE__, __LINE__, "a log record holds a secret: \"%s\"", state.leak);
    }
    unlock();
}

static void route_line_at_info(void)
{
    dtun_conn *conn;
    int n = snprintf(state.route_needle, sizeof state.route_needle, ":%s",
                     testenv_value("ECHO_TLS_PORT"));
    CHECK(n > 0 && (size_t)n < sizeof state.route_needle);

    dtun_set_logger(on_log, &state, DTUN_LOG_INFO);
    reset_counts();
    conn = open_scenario("direct_tls.yaml");
    echo_check(conn, 1000, 1);
    dtun_close(conn);
    lock();
    test_note("at INFO: %u records (%u INFO)", state.total, state.per_level[DTUN_LOG_INFO]);
    CHECK(state.saw_route);
    /* The filter holds: nothing more verbose than INFO. */
    CHECK(state.per_level[DTUN_LOG_DEBUG] == 0 && state.per_level[DTUN_LOG_TRACE] == 0);
    CHECK(state.bad_level == 0 && state.bad_userdata == 0);
    unlock();
}

static void no_password_at_trace(void)
{
    static unsigned char sentinel;
    dtun_config *config;
    dtun_conn *conn;
    char path[4096];
    const char *user = testenv_value("PROXY_USER");

    add_password(user, testenv_value("PROXY_PASSWORD"));
    add_password(user, testenv_value("WRONG_PASSWORD"));

    dtun_set_logger(on_log, &state, DTUN_LOG_TRACE);
    reset_counts();

    /* The right password: a tunnel, data through it, a close. */
    conn = open_scenario("proxy_tls_auth.yaml");
    echo_check(conn, 20000, 2);
    dtun_close(conn);

    /* The wrong password: a 407, an ERROR record, and a message. */
    testenv_path(path, sizeof path, "proxy_auth_wrong.yaml");
    CHECK_OK(dtun_config_from_file(path, &config));
    conn = (dtun_conn *)(void *)&sentinel;
    CHECK_STATUS(dtun_open(config, TEST_OPEN_TIMEOUT_MS, &conn), DTUN_ERR_PROXY_AUTH);
    check_no_leak(dtun_last_error(), "dtun_last_error() after a 407");
    /* Setting the password by key logs nothing secret either, and a failed open from it
     * says nothing secret. */
    CHECK_OK(dtun_config_set(config, "http_proxy.proxy_password", testenv_value("WRONG_PASSWORD")));
    CHECK_STATUS(dtun_open(config, TEST_OPEN_TIMEOUT_MS, &conn), DTUN_ERR_PROXY_AUTH);
    check_no_leak(dtun_last_error(), "dtun_last_error() after a 407");
    CHECK(conn == (dtun_conn *)(void *)&sentinel);
    dtun_config_free(config);

    lock();
    test_note("at TRACE: %u records (ERROR %u, WARN %u, INFO %u, DEBUG %u, TRACE %u)",
              state.total, state.per_level[DTUN_LOG_ERROR], state.per_level[DTUN_LOG_WARN],
              state.per_level[DTUN_LOG_INFO], state.per_level[DTUN_LOG_DEBUG],
              state.per_level[DTUN_LOG_TRACE]);
    CHECK(state.per_level[DTUN_LOG_ERROR] > 0);
    CHECK(state.per_level[DTUN_LOG_INFO] > 0);
    CHECK(state.per_level[DTUN_LOG_DEBUG] > 0);
    CHECK(state.per_level[DTUN_LOG_TRACE] > 0);
    unlock();
    check_no_leak_in_records();
}

static void error_level_filters(void)
{
    static unsigned char sentinel;
    dtun_config *config = load_scenario("proxy_auth_wrong.yaml");
    dtun_conn *conn = (dtun_conn *)(void *)&sentinel;
    dtun_set_logger(on_log, &state, DTUN_LOG_ERROR);
    reset_counts();
    CHECK_STATUS(dtun_open(config, TEST_OPEN_TIMEOUT_MS, &conn), DTUN_ERR_PROXY_AUTH);
    dtun_config_free(config);
    lock();
    CHECK(state.per_level[DTUN_LOG_ERROR] > 0);
    CHECK(state.total == state.per_level[DTUN_LOG_ERROR]);
    unlock();
}

/* A thread that keeps the library logging (TRACE records for every send and recv) until it
 * has made ROUNDS_AFTER_UNSET echo rounds after the logger was unset: enough calls that would
 * log to make a stray callback very likely if the library had one. */
#define ROUNDS_AFTER_UNSET 50

static void *busy_worker(void *arg)
{
    dtun_conn *conn = (dtun_conn *)arg;
    uint32_t round = 0;
    int after = 0;
    while (after < ROUNDS_AFTER_UNSET) {
        int unset = atomic_load(&state.unset_returned);
        echo_check(conn, 512, round++);
        if (unset) {
            after++;
        }
    }
    return NULL;
}

static void not_called_after_unset(void)
{
    dtun_conn *conn = open_scenario("direct_tls.yaml");
    pthread_t thread;
    unsigned seen;

    dtun_set_logger(on_log, &state, DTUN_LOG_TRACE);
    reset_counts();
    CHECK(pthread_create(&thread, NULL, busy_worker, conn) == 0);

    /* Wait until the worker's records are flowing, so the unset races with live calls. */
    lock();
    while (state.total < 20) {
        if (pthread_cond_wait(&state.changed, &state.lock) != 0) {
            test_fail(__FILE__, __LINE__, "pthread_cond_wait failed");
        }
    }
    unlock();

    dtun_set_logger(NULL, NULL, DTUN_LOG_TRACE);
    atomic_store(&state.unset_returned, 1);
    lock();
    seen = state.total;
    unlock();

    CHECK(pthread_join(thread, NULL) == 0);
    dtun_close(conn);

    test_note("logger unset after %u records; the worker then ran %d more echo rounds", seen,
              ROUNDS_AFTER_UNSET);
    CHECK(atomic_load(&state.calls_after_unset) == 0);
    lock();
    CHECK(state.total == seen);
    unlock();
}

int main(void)
{
    route_line_at_info();
    no_password_at_trace();
    error_level_filters();
    not_called_after_unset();
    check_no_leak_in_records();
    test_note("logger checks passed");
    return 0;
}
