/*
 * A small tour of the API for valgrind (ctest runs it under memcheck when valgrind is
 * installed): configs from a file, from text and key by key, a tunnel through an
 * authenticating TLS proxy with TLS inside, a direct one, failures that fill in the last
 * error, open reports, the logger, and every free. Kept small because memcheck is tens of times slower.
 * What must hold: no invalid read or write, and no definite leak once everything is freed.
 * (The library's runtime threads stay alive until exit, so their memory is "still reachable"
 * or "possibly lost"; those are not errors here.)
 */

#define _POSIX_C_SOURCE 200809L

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "support.h"

static void count_records(void *userdata, dtun_log_level level, const char *message)
{
    atomic_uint *count = (atomic_uint *)userdata;
    (void)level;
    /* Touch the message: memcheck checks that the library passed readable memory. */
    if (strlen(message) > 0) {
        atomic_fetch_add(count, 1);
    }
}

int main(void)
{
    static const char yaml[] = "collector: localhost\nssl: false\n";
    static const char bad_yaml[] = "collector_port: [\n";
    /* The callback may run on the library's threads too: an atomic counter. */
    static atomic_uint records;
    dtun_config *config = NULL;
    dtun_conn *conn = NULL;
    dtun_report *report = NULL;

    dtun_set_logger(count_records, &records, DTUN_LOG_TRACE);

    conn = open_scenario("proxy_tls_auth.yaml");
    echo_check(conn, 4096, 1);
    CHECK_OK(dtun_conn_report(conn, &report));
    dtun_close(conn);
    /* The report outlives the connection. */
    CHECK(strlen(dtun_report_text(report)) > 0);
    CHECK(dtun_report_get(report, "proxy.tls_version") != NULL);
    dtun_report_free(report);

    conn = open_scenario("direct_tls.yaml");
    echo_check(conn, 100, 2);
    dtun_close(conn);

    config = load_scenario("proxy_auth_wrong.yaml");
    CHECK_STATUS(dtun_open(config, TEST_OPEN_TIMEOUT_MS, &conn), DTUN_ERR_PROXY_AUTH);
    CHECK(dtun_last_error()[0] != '\0');
    dtun_config_free(config);
    CHECK_OK(dtun_last_open_report(&report));
    CHECK(strlen(dtun_report_text(report)) > 0);
    CHECK(dtun_report_get(report, "hint") != NULL);
    dtun_report_free(report);

    CHECK_OK(dtun_config_from_yaml(yaml, strlen(yaml), &config));
    CHECK_OK(dtun_config_set(config, "collector_port", testenv_value("ECHO_PLAIN_PORT")));
    CHECK_STATUS(dtun_config_set(config, "no_such_key", "1"), DTUN_ERR_INVALID_ARGUMENT);
    CHECK_OK(dtun_open(config, TEST_OPEN_TIMEOUT_MS, &conn));
    dtun_config_free(config);
    echo_check(conn, 100, 3);
    dtun_close(conn);

    config = NULL;
    CHECK_STATUS(dtun_config_from_yaml(bad_yaml, strlen(bad_yaml), &config), DTUN_ERR_CONFIG);
    CHECK(config == NULL);

    dtun_set_logger(NULL, NULL, DTUN_LOG_ERROR);
    CHECK(atomic_load(&records) > 0);
    test_note("valgrind tour done, %u log records", atomic_load(&records));
    return 0;
}
