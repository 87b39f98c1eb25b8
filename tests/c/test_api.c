/*
 * Every function of the C API (c-api.md and the open reports the header adds), its documented
 * edge cases, NULL and misuse, and the rule that outputs are written only on success.
 */

#define _POSIX_C_SOURCE 200809L

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "support.h"

/* c-api.md writes the macro with parentheses: unparenthesised, this would read 1--1. */
_Static_assert(1 - DTUN_WAIT_FOREVER == 2, "DTUN_WAIT_FOREVER must be (-1)");

/* Values that a failed call must leave in place: if one changes, the library wrote an output
 * on failure. */
static unsigned char sentinel_storage[2];
#define SENTINEL_CONFIG ((dtun_config *)(void *)&sentinel_storage[0])
#define SENTINEL_CONN ((dtun_conn *)(void *)&sentinel_storage[1])
#define SENTINEL_SIZE ((size_t)0x5A5A5A5A)

/* A block of patterned bytes posing as a handle: the library tags its handles and must
 * reject a pointer that is not one (c-api.md "misuse of a handle") without touching it:
 * fill_fake_handle() writes the pattern, CHECK_FAKE_UNTOUCHED() compares every byte with it
 * after each use. It is larger than any handle type, so the tag check reads only memory that
 * exists. */
#define FAKE_SEED 0xFA4EU
static _Alignas(64) unsigned char not_a_handle[4096];
#define FAKE_CONFIG ((dtun_config *)(void *)not_a_handle)
#define FAKE_CONN ((dtun_conn *)(void *)not_a_handle)
#define FAKE_REPORT ((dtun_report *)(void *)not_a_handle)
#define CHECK_FAKE_UNTOUCHED() check_fake_untouched(__LINE__)

static void fill_fake_handle(void)
{
    size_t i;
    for (i = 0; i < sizeof not_a_handle; i++) {
        not_a_handle[i] = pattern_byte(FAKE_SEED, i);
    }
}

static void check_fake_untouched(int line)
{
    unsigned char want[sizeof not_a_handle];
    size_t i;
    for (i = 0; i < sizeof want; i++) {
        want[i] = pattern_byte(FAKE_SEED, i);
    }
    if (memcmp(not_a_handle, want, sizeof want) != 0) {
        for (i = 0; i < sizeof want && not_a_handle[i] == want[i]; i++) {
        }
        test_fail(__FILE__, line, "the library wrote into a pointer that is not a handle: "
                                  "byte %zu is 0x%02x, was 0x%02x",
                  i, not_a_handle[i], want[i]);
    }
}

static int contains(const char *haystack, const char *needle)
{
    return strstr(haystack, needle) != NULL;
}

/* The message of the last call must be non-empty and mention `needle`. */
static void check_message_mentions(const char *needle)
{
    const char *message = dtun_last_error();
    if (message[0] == '\0' || !contains(message, needle)) {
        test_fail(__FILE__, __LINE__, "dtun_last_error() \"%s\" does not mention \"%s\"", message,
                  needle);
    }
}

static void test_version(void)
{
    char expected[64];
    int n = snprintf(expected, sizeof expected, "%d.%d.%d", DTUN_VERSION_MAJOR,
                     DTUN_VERSION_MINOR, DTUN_VERSION_PATCH);
    CHECK(n > 0 && (size_t)n < sizeof expected);
    CHECK(strcmp(dtun_version(), expected) == 0);
    /* Static storage: the same pointer every time. */
    CHECK(dtun_version() == dtun_version());
    test_note("dtun_version: %s", dtun_version());
}

static void test_status_names(void)
{
    /* The numbers are the contract (c-api.md): a renumbering must fail here. */
    static const struct {
        dtun_status status;
        int value;
        const char *name;
    } statuses[] = {
        {DTUN_OK, 0, "DTUN_OK"},
        {DTUN_TIMED_OUT, 1, "DTUN_TIMED_OUT"},
        {DTUN_CLOSED, 2, "DTUN_CLOSED"},
        {DTUN_SHUT_DOWN, 3, "DTUN_SHUT_DOWN"},
        {DTUN_ERR_INVALID_ARGUMENT, 100, "DTUN_ERR_INVALID_ARGUMENT"},
        {DTUN_ERR_CONFIG, 101, "DTUN_ERR_CONFIG"},
        {DTUN_ERR_RESOLVE, 110, "DTUN_ERR_RESOLVE"},
        {DTUN_ERR_CONNECT, 111, "DTUN_ERR_CONNECT"},
        {DTUN_ERR_TIMEOUT, 112, "DTUN_ERR_TIMEOUT"},
        {DTUN_ERR_PROXY_TLS, 120, "DTUN_ERR_PROXY_TLS"},
        {DTUN_ERR_PROXY_CERT, 121, "DTUN_ERR_PROXY_CERT"},
        {DTUN_ERR_PROXY_AUTH, 122, "DTUN_ERR_PROXY_AUTH"},
        {DTUN_ERR_PROXY_REFUSED, 123, "DTUN_ERR_PROXY_REFUSED"},
        {DTUN_ERR_PROXY_PROTOCOL, 124, "DTUN_ERR_PROXY_PROTOCOL"},
        {DTUN_ERR_COLLECTOR_TLS, 130, "DTUN_ERR_COLLECTOR_TLS"},
        {DTUN_ERR_COLLECTOR_CERT, 131, "DTUN_ERR_COLLECTOR_CERT"},
        {DTUN_ERR_IO, 140, "DTUN_ERR_IO"},
        {DTUN_ERR_INTERNAL, 199, "DTUN_ERR_INTERNAL"},
    };
    static const int not_statuses[] = {-1, 4, 99, 102, 141, 198, 200, 1000, INT_MAX};
    dtun_config *out = SENTINEL_CONFIG;
    size_t i;
    for (i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        const char *name = dtun_status_name(statuses[i].status);
        if ((int)statuses[i].status != statuses[i].value || strcmp(name, statuses[i].name) != 0) {
            test_fail(__FILE__, __LINE__, "status %d is named \"%s\", expected %s = %d",
                      (int)statuses[i].status, name, statuses[i].name, statuses[i].value);
        }
        CHECK(dtun_status_name(statuses[i].status) == name); /* static storage */
    }
    for (i = 0; i < sizeof not_statuses / sizeof not_statuses[0]; i++) {
        CHECK(strcmp(dtun_status_name((dtun_status)not_statuses[i]), "DTUN_UNKNOWN") == 0);
    }
    /* dtun_status_name leaves this thread's last error alone. */
    CHECK_STATUS(dtun_config_from_file("no-such-dir/dragent.yaml", &out),
                 DTUN_ERR_CONFIG);
    (void)dtun_status_name(DTUN_ERR_CONFIG);
    check_message_mentions("no-such-dir/dragent.yaml");
    CHECK(out == SENTINEL_CONFIG);
}

static void *last_error_of_fresh_thread(void *arg)
{
    (void)arg;
    /* A thread that never called the library has no failure to report. */
    return (void *)(dtun_last_error()[0] == '\0' ? "empty" : "not empty");
}

static void test_last_error(void)
{
    dtun_config *config = NULL;
    pthread_t thread;
    void *result = NULL;
    const char *message;

    CHECK_STATUS(dtun_config_new(NULL), DTUN_ERR_INVALID_ARGUMENT);
    message = dtun_last_error();
    CHECK(message[0] != '\0');
    /* The pointer stays valid, with the same text, until this thread's next dtun_ call. */
    CHECK(dtun_last_error() == message || strcmp(dtun_last_error(), message) == 0);

    /* Per thread: another thread does not see this thread's failure. */
    CHECK(pthread_create(&thread, NULL, last_error_of_fresh_thread, NULL) == 0);
    CHECK(pthread_join(thread, &result) == 0);
    CHECK(strcmp((const char *)result, "empty") == 0);
    CHECK(dtun_last_error()[0] != '\0');

    /* A success clears it. */
    CHECK_OK(dtun_config_new(&config));
    CHECK(strcmp(dtun_last_error(), "") == 0);
    dtun_config_free(config);
}

static void test_config_new_and_free(void)
{
    dtun_config *config = NULL;
    CHECK_OK(dtun_config_new(&config));
    CHECK(config != NULL);
    dtun_config_free(config);
    CHECK_STATUS(dtun_config_new(NULL), DTUN_ERR_INVALID_ARGUMENT);
    /* NULL and pointers that are not handles are no-ops. */
    dtun_config_free(NULL);
    dtun_config_free(FAKE_CONFIG);
    CHECK_FAKE_UNTOUCHED();
}

static void test_config_from_file(void)
{
    char path[4096];
    dtun_config *config = NULL;
    dtun_config *out = SENTINEL_CONFIG;

    testenv_path(path, sizeof path, "proxy_tls_auth.yaml");
    CHECK_OK(dtun_config_from_file(path, &config));
    CHECK(config != NULL);
    CHECK(strcmp(dtun_last_error(), "") == 0);
    dtun_config_free(config);

    /* A missing file: DTUN_ERR_CONFIG naming it, *out untouched. */
    testenv_path(path, sizeof path, "no-such-file.yaml");
    CHECK_STATUS(dtun_config_from_file(path, &out), DTUN_ERR_CONFIG);
    check_message_mentions("no-such-file.yaml");
    CHECK(out == SENTINEL_CONFIG);

    CHECK_STATUS(dtun_config_from_file(NULL, &out), DTUN_ERR_INVALID_ARGUMENT);
    CHECK(out == SENTINEL_CONFIG);
    testenv_path(path, sizeof path, "direct_tls.yaml");
    CHECK_STATUS(dtun_config_from_file(path, NULL), DTUN_ERR_INVALID_ARGUMENT);
}

static void expect_yaml(const char *yaml, size_t len, dtun_status want, const char *mentions)
{
    dtun_config *out = SENTINEL_CONFIG;
    dtun_status got = dtun_config_from_yaml(yaml, len, &out);
    if (got != want) {
        const char *message = dtun_last_error();
        test_fail(__FILE__, __LINE__, "dtun_config_from_yaml(\"%.*s\") returned %s, expected %s: %s",
                  (int)len, yaml != NULL ? yaml : "", dtun_status_name(got), dtun_status_name(want),
                  message);
    }
    if (want == DTUN_OK) {
        CHECK(out != SENTINEL_CONFIG && out != NULL);
        CHECK(strcmp(dtun_last_error(), "") == 0);
        dtun_config_free(out);
    } else {
        CHECK(out == SENTINEL_CONFIG);
        if (mentions != NULL) {
            check_message_mentions(mentions);
        }
    }
}

static void test_config_from_yaml(void)
{
    static const char valid[] = "collector: collector.example\ncollector_port: 443\n";
    static const char cut[] = "collector_port: 70000";
    static const char other_keys[] =
        "customerid: 1234\ntags: [a, b]\nsome_agent_setting: {nested: {deep: true}}\n"
        "collector: c.example\n";
    static const char lenient[] =
        "collector_port: \"8443\"\nssl: YES\nhttp_proxy:\n  proxy_host: p.example\n"
        "  proxy_port: '3128'\n  proxy_user: agent\n  proxy_password: 12345\n  ssl: On\n";
    static const char contradiction[] =
        "ssl: false\nhttp_proxy:\n  proxy_host: p.example\n  proxy_port: 3128\n  ssl: true\n";
    static const char bad_port[] = "collector_port: 70000\n";
    static const char bad_bool[] = "ssl: maybe\n";
    static const char syntax[] = "collector: ok\nhttp_proxy: [unclosed\n";
    static const char not_utf8[] = "collector: \xff\xfe\n";
    dtun_config *out = SENTINEL_CONFIG;

    expect_yaml(valid, strlen(valid), DTUN_OK, NULL);
    /* Empty text, and NULL with length 0: every default. */
    expect_yaml("", 0, DTUN_OK, NULL);
    expect_yaml(NULL, 0, DTUN_OK, NULL);
    /* Only len bytes are read: the cut "collector_port: 7000" is valid. */
    expect_yaml(cut, strlen(cut) - 1, DTUN_OK, NULL);
    expect_yaml(cut, strlen(cut), DTUN_ERR_CONFIG, "collector_port");
    /* Keys the library does not read are ignored, whatever their type. */
    expect_yaml(other_keys, strlen(other_keys), DTUN_OK, NULL);
    /* Lenient scalars, as the agent's own reader. */
    expect_yaml(lenient, strlen(lenient), DTUN_OK, NULL);
    expect_yaml(contradiction, strlen(contradiction), DTUN_ERR_CONFIG, "ssl");
    expect_yaml(bad_port, strlen(bad_port), DTUN_ERR_CONFIG, "collector_port");
    expect_yaml(bad_bool, strlen(bad_bool), DTUN_ERR_CONFIG, "ssl");
    expect_yaml(syntax, strlen(syntax), DTUN_ERR_CONFIG, "line");
    expect_yaml(not_utf8, strlen(not_utf8), DTUN_ERR_CONFIG, NULL);

    CHECK_STATUS(dtun_config_from_yaml(NULL, 5, &out), DTUN_ERR_INVALID_ARGUMENT);
    CHECK(out == SENTINEL_CONFIG);
    CHECK_STATUS(dtun_config_from_yaml(valid, strlen(valid), NULL), DTUN_ERR_INVALID_ARGUMENT);
}

static void test_config_set(void)
{
    dtun_config *config = NULL;
    dtun_conn *conn = NULL;
    const char *ca = testenv_value("CA");

    CHECK_OK(dtun_config_new(&config));

    /* Every key config.md lists is accepted; values are YAML scalar text. */
    CHECK_OK(dtun_config_set(config, "root_dir", testenv_dir()));
    CHECK_OK(dtun_config_set(config, "collector", "collector.example"));
    CHECK_OK(dtun_config_set(config, "collector_port", "'8443'"));
    CHECK_OK(dtun_config_set(config, "ssl", "yes"));
    CHECK_OK(dtun_config_set(config, "ssl_verify_certificate", "TRUE"));
    CHECK_OK(dtun_config_set(config, "ca_certificate", ca));
    CHECK_OK(dtun_config_set(config, "http_proxy.proxy_host", "proxy.example"));
    CHECK_OK(dtun_config_set(config, "http_proxy.proxy_port", "3128"));
    CHECK_OK(dtun_config_set(config, "http_proxy.proxy_user", "agent"));
    CHECK_OK(dtun_config_set(config, "http_proxy.proxy_password", "12345"));
    CHECK_OK(dtun_config_set(config, "http_proxy.ssl", "on"));
    CHECK_OK(dtun_config_set(config, "http_proxy.ssl_verify_certificate", "off"));
    CHECK_OK(dtun_config_set(config, "http_proxy.ca_certificate", ca));
    CHECK(strcmp(dtun_last_error(), "") == 0);
    /* TLS to the proxy without TLS to the collector is refused (config.md: the agent must
     * never believe its metrics are encrypted end to end when they are not). */
    CHECK_STATUS(dtun_config_set(config, "ssl", "false"), DTUN_ERR_CONFIG);
    check_message_mentions("ssl");
    /* An empty value restores the default. */
    CHECK_OK(dtun_config_set(config, "collector_port", ""));
    CHECK_OK(dtun_config_set(config, "http_proxy.proxy_host", ""));

    /* Unknown keys are misuse, not configuration: DTUN_ERR_INVALID_ARGUMENT. */
    CHECK_STATUS(dtun_config_set(config, "no_such_key", "1"), DTUN_ERR_INVALID_ARGUMENT);
    check_message_mentions("no_such_key");
    CHECK_STATUS(dtun_config_set(config, "http_proxy.no_such_key", "1"),
                 DTUN_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(dtun_config_set(config, "", "1"), DTUN_ERR_INVALID_ARGUMENT);
    /* Bad values and contradictions: DTUN_ERR_CONFIG naming the key. */
    CHECK_STATUS(dtun_config_set(config, "collector_port", "70000"), DTUN_ERR_CONFIG);
    check_message_mentions("collector_port");
    CHECK_STATUS(dtun_config_set(config, "http_proxy.proxy_port", "-1"), DTUN_ERR_CONFIG);
    check_message_mentions("proxy_port");
    CHECK_STATUS(dtun_config_set(config, "ssl", "maybe"), DTUN_ERR_CONFIG);
    check_message_mentions("ssl");
    CHECK_STATUS(dtun_config_set(config, "ca_certificate", "no-such-ca.pem"), DTUN_ERR_CONFIG);
    check_message_mentions("no-such-ca.pem");
    /* NULL arguments and a pointer that is not a config. */
    CHECK_STATUS(dtun_config_set(NULL, "collector", "x"), DTUN_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(dtun_config_set(config, NULL, "x"), DTUN_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(dtun_config_set(config, "collector", NULL), DTUN_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(dtun_config_set(FAKE_CONFIG, "collector", "x"), DTUN_ERR_INVALID_ARGUMENT);
    check_message_mentions("dtun_config");
    CHECK_FAKE_UNTOUCHED();
    dtun_config_free(config);

    /* A config built key by key opens the full route: TLS to an authenticating proxy, TLS to
     * the collector inside. */
    CHECK_OK(dtun_config_new(&config));
    CHECK_OK(dtun_config_set(config, "collector", testenv_value("HOST")));
    CHECK_OK(dtun_config_set(config, "collector_port", testenv_value("ECHO_TLS_PORT")));
    CHECK_OK(dtun_config_set(config, "ca_certificate", ca));
    CHECK_OK(dtun_config_set(config, "http_proxy.proxy_host", testenv_value("HOST")));
    CHECK_OK(dtun_config_set(config, "http_proxy.proxy_port", testenv_value("PROXY_TLS_AUTH_PORT")));
    CHECK_OK(dtun_config_set(config, "http_proxy.ssl", "true"));
    CHECK_OK(dtun_config_set(config, "http_proxy.ca_certificate", ca));
    CHECK_OK(dtun_config_set(config, "http_proxy.proxy_user", testenv_value("PROXY_USER")));
    CHECK_OK(dtun_config_set(config, "http_proxy.proxy_password",
                             testenv_value("PROXY_PASSWORD")));
    /* A failed set leaves the config as it was: this one must not break the route. */
    CHECK_STATUS(dtun_config_set(config, "collector_port", "70000"), DTUN_ERR_CONFIG);
    CHECK_OK(dtun_open(config, TEST_OPEN_TIMEOUT_MS, &conn));
    echo_check(conn, 1000, 1);
    dtun_close(conn);

    /* The same config switched to plain TCP through the plain proxy. */
    CHECK_OK(dtun_config_set(config, "http_proxy.ssl", "false"));
    CHECK_OK(dtun_config_set(config, "http_proxy.proxy_port", testenv_value("PROXY_PLAIN_PORT")));
    CHECK_OK(dtun_config_set(config, "http_proxy.proxy_user", ""));
    CHECK_OK(dtun_config_set(config, "ssl", "false"));
    CHECK_OK(dtun_config_set(config, "collector_port", testenv_value("ECHO_PLAIN_PORT")));
    CHECK_OK(dtun_open(config, TEST_OPEN_TIMEOUT_MS, &conn));
    echo_check(conn, 1000, 2);
    dtun_close(conn);
    dtun_config_free(config);
}

static void test_open_send_recv_close(void)
{
    dtun_config *config = load_scenario("direct_tls.yaml");
    dtun_conn *conn = NULL;
    dtun_conn *out = SENTINEL_CONN;
    uint8_t buf[16];
    size_t n = SENTINEL_SIZE;
    dtun_status status;

    /* Arguments: NULL config, NULL out, a bad timeout, a pointer that is not a config. */
    CHECK_STATUS(dtun_open(NULL, TEST_OPEN_TIMEOUT_MS, &out), DTUN_ERR_INVALID_ARGUMENT);
    CHECK(out == SENTINEL_CONN);
    CHECK_STATUS(dtun_open(config, TEST_OPEN_TIMEOUT_MS, NULL), DTUN_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(dtun_open(config, -2, &out), DTUN_ERR_INVALID_ARGUMENT);
    check_message_mentions("-2");
    CHECK_STATUS(dtun_open(config, INT32_MIN, &out), DTUN_ERR_INVALID_ARGUMENT);
    CHECK(out == SENTINEL_CONN);
    CHECK_STATUS(dtun_open(FAKE_CONFIG, TEST_OPEN_TIMEOUT_MS, &out), DTUN_ERR_INVALID_ARGUMENT);
    CHECK(out == SENTINEL_CONN);
    CHECK_FAKE_UNTOUCHED();

    /* 0 never waits: on loopback the open may or may not complete at once. */
    status = dtun_open(config, 0, &out);
    CHECK(status == DTUN_OK || status == DTUN_ERR_TIMEOUT);
    if (status == DTUN_OK) {
        CHECK(out != SENTINEL_CONN && out != NULL);
        dtun_close(out);
        out = SENTINEL_CONN;
    } else {
        CHECK(out == SENTINEL_CONN);
    }

    /* DTUN_WAIT_FOREVER is a valid timeout everywhere. */
    CHECK_OK(dtun_open(config, DTUN_WAIT_FOREVER, &conn));
    CHECK(conn != NULL);
    CHECK(strcmp(dtun_last_error(), "") == 0);
    dtun_config_free(config);

    /* send: NULL connection, NULL buffer with a length, NULL *sent, bad timeout. Invalid
     * arguments leave *sent alone. */
    CHECK_STATUS(dtun_send(NULL, buf, 1, &n, 100), DTUN_ERR_INVALID_ARGUMENT);
    CHECK(n == SENTINEL_SIZE);
    CHECK_STATUS(dtun_send(FAKE_CONN, buf, 1, &n, 100), DTUN_ERR_INVALID_ARGUMENT);
    CHECK(n == SENTINEL_SIZE);
    CHECK_FAKE_UNTOUCHED();
    CHECK_STATUS(dtun_send(conn, NULL, 1, &n, 100), DTUN_ERR_INVALID_ARGUMENT);
    CHECK(n == SENTINEL_SIZE);
    CHECK_STATUS(dtun_send(conn, buf, 1, NULL, 100), DTUN_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(dtun_send(conn, buf, 1, &n, -5), DTUN_ERR_INVALID_ARGUMENT);
    CHECK(n == SENTINEL_SIZE);
    /* len 0 with a NULL buffer is allowed and sends nothing. */
    CHECK_OK(dtun_send(conn, NULL, 0, &n, 100));
    CHECK(n == 0);

    /* recv: the same argument checks. */
    n = SENTINEL_SIZE;
    CHECK_STATUS(dtun_recv(NULL, buf, sizeof buf, &n, 100), DTUN_ERR_INVALID_ARGUMENT);
    CHECK(n == SENTINEL_SIZE);
    CHECK_STATUS(dtun_recv(FAKE_CONN, buf, sizeof buf, &n, 100), DTUN_ERR_INVALID_ARGUMENT);
    CHECK(n == SENTINEL_SIZE);
    CHECK_FAKE_UNTOUCHED();
    CHECK_STATUS(dtun_recv(conn, NULL, sizeof buf, &n, 100), DTUN_ERR_INVALID_ARGUMENT);
    CHECK(n == SENTINEL_SIZE);
    CHECK_STATUS(dtun_recv(conn, buf, sizeof buf, NULL, 100), DTUN_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(dtun_recv(conn, buf, sizeof buf, &n, -3), DTUN_ERR_INVALID_ARGUMENT);
    CHECK(n == SENTINEL_SIZE);
    /* cap 0 returns at once with nothing. */
    CHECK_OK(dtun_recv(conn, NULL, 0, &n, DTUN_WAIT_FOREVER));
    CHECK(n == 0);
    /* Nothing was sent, so nothing can arrive: timeout 0 reports DTUN_TIMED_OUT at once. */
    n = SENTINEL_SIZE;
    CHECK_STATUS(dtun_recv(conn, buf, sizeof buf, &n, 0), DTUN_TIMED_OUT);
    CHECK(n == 0);

    /* The connection is still fine after all that misuse. */
    echo_check(conn, 5000, 3);
    /* Bytes arrive as soon as there are some: one byte sent, one byte back. */
    send_all(conn, "x", 1);
    n = SENTINEL_SIZE;
    CHECK_OK(dtun_recv(conn, buf, sizeof buf, &n, TEST_IO_TIMEOUT_MS));
    CHECK(n == 1 && buf[0] == 'x');

    dtun_close(conn);
    dtun_close(NULL);
    dtun_close(FAKE_CONN);
    CHECK_FAKE_UNTOUCHED();
}

static void *last_open_report_of_fresh_thread(void *arg)
{
    dtun_report *report = (dtun_report *)arg;
    /* This thread never called dtun_open: there is no report, and the output stays. */
    dtun_status status = dtun_last_open_report(&report);
    return (void *)(status == DTUN_ERR_INVALID_ARGUMENT && report == (dtun_report *)arg ? "ok"
                                                                                        : "bad");
}

/* A report value that must be present (and, when `want` is not NULL, equal to it). */
static const char *report_value(const dtun_report *report, const char *key, const char *want)
{
    const char *value = dtun_report_get(report, key);
    if (value == NULL) {
        test_fail(__FILE__, __LINE__, "the report has no %s", key);
    }
    if (want != NULL && strcmp(value, want) != 0) {
        test_fail(__FILE__, __LINE__, "report %s is \"%s\", expected \"%s\"", key, value, want);
    }
    return value;
}

static void test_reports(void)
{
    static unsigned char sentinel;
    dtun_report *const untouched = (dtun_report *)(void *)&sentinel;
    dtun_report *report = untouched;
    dtun_config *config;
    dtun_conn *conn = NULL;
    pthread_t thread;
    void *result = NULL;
    char port[16];
    const char *text;

    /* No open on a thread yet: DTUN_ERR_INVALID_ARGUMENT, *out untouched. */
    CHECK(pthread_create(&thread, NULL, last_open_report_of_fresh_thread, untouched) == 0);
    CHECK(pthread_join(thread, &result) == 0);
    CHECK(strcmp((const char *)result, "ok") == 0);
    CHECK_STATUS(dtun_last_open_report(NULL), DTUN_ERR_INVALID_ARGUMENT);

    /* After a failed open: the stage that failed, the message, and a hint. */
    config = load_scenario("refused.yaml");
    CHECK_STATUS(dtun_open(config, TEST_OPEN_TIMEOUT_MS, &conn), DTUN_ERR_CONNECT);
    CHECK_OK(dtun_last_open_report(&report));
    CHECK(report != untouched && report != NULL);
    report_value(report, "outcome", "DTUN_ERR_CONNECT");
    CHECK(report_value(report, "failed_stage", NULL)[0] != '\0');
    CHECK(report_value(report, "message", NULL)[0] != '\0');
    CHECK(report_value(report, "hint", NULL)[0] != '\0');
    CHECK(strstr(report_value(report, "route", NULL), "direct") != NULL);
    CHECK(snprintf(port, sizeof port, ":%s", testenv_value("REFUSED_PORT")) > 0);
    CHECK(strstr(report_value(report, "collector", NULL), port) != NULL);
    CHECK(dtun_report_get(report, "proxy") == NULL); /* a direct route has no proxy */
    CHECK(dtun_report_get(report, "no.such.key") == NULL);
    text = dtun_report_text(report);
    CHECK(text != NULL && strstr(text, report_value(report, "hint", NULL)) != NULL);
    dtun_report_free(report);
    dtun_config_free(config);

    /* Arguments refused: no report of that call ("its latest call was refused for its
     * arguments"). */
    config = load_scenario("direct_tls.yaml");
    CHECK_STATUS(dtun_open(config, -2, &conn), DTUN_ERR_INVALID_ARGUMENT);
    report = untouched;
    CHECK_STATUS(dtun_last_open_report(&report), DTUN_ERR_INVALID_ARGUMENT);
    CHECK(report == untouched);

    /* After a successful open: the connection's report, and the thread's latest one. */
    CHECK_OK(dtun_open(config, TEST_OPEN_TIMEOUT_MS, &conn));
    dtun_config_free(config);
    CHECK_OK(dtun_conn_report(conn, &report));
    report_value(report, "outcome", "DTUN_OK");
    report_value(report, "failed_stage", "");
    report_value(report, "hint", "");
    report_value(report, "collector.tls", "yes");
    CHECK(strncmp(report_value(report, "collector.tls_version", NULL), "TLS", 3) == 0);
    CHECK(report_value(report, "time.total_ms", NULL)[0] != '\0');
    /* A report outlives its connection. */
    echo_check(conn, 100, 4);
    dtun_close(conn);
    report_value(report, "outcome", "DTUN_OK");
    CHECK(dtun_report_text(report) != NULL);
    dtun_report_free(report);
    CHECK_OK(dtun_last_open_report(&report));
    report_value(report, "outcome", "DTUN_OK");
    dtun_report_free(report);

    /* NULL and misuse. */
    report = untouched;
    CHECK_STATUS(dtun_conn_report(NULL, &report), DTUN_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(dtun_conn_report(FAKE_CONN, &report), DTUN_ERR_INVALID_ARGUMENT);
    CHECK(report == untouched);
    CHECK(dtun_report_text(NULL) == NULL);
    CHECK(dtun_report_get(NULL, "route") == NULL);
    CHECK(dtun_report_text(FAKE_REPORT) == NULL);
    CHECK(dtun_report_get(FAKE_REPORT, "route") == NULL);
    dtun_report_free(NULL);
    dtun_report_free(FAKE_REPORT);
    CHECK_FAKE_UNTOUCHED();
}

/* Live handles passed as another type: each call refuses (or, for the void ones, ignores)
 * the handle, and the handle still works afterwards: a close that took a config for a
 * connection would have freed it, and the next open with it would be refused. */
static void test_wrong_type_handles(void)
{
    dtun_config *config = load_scenario("direct_tls.yaml");
    dtun_conn *conn = NULL;
    dtun_report *report = NULL;
    dtun_report *report_out = NULL;
    dtun_conn *conn_out = NULL;
    uint8_t buf[16];
    size_t n = SENTINEL_SIZE;

    CHECK_OK(dtun_open(config, TEST_OPEN_TIMEOUT_MS, &conn));
    CHECK_OK(dtun_conn_report(conn, &report));

    /* A config where a connection or a report is expected. */
    CHECK_STATUS(dtun_send((dtun_conn *)(void *)config, buf, 1, &n, 100),
                 DTUN_ERR_INVALID_ARGUMENT);
    check_message_mentions("dtun_conn");
    CHECK(n == SENTINEL_SIZE);
    CHECK_STATUS(dtun_recv((dtun_conn *)(void *)config, buf, sizeof buf, &n, 100),
                 DTUN_ERR_INVALID_ARGUMENT);
    CHECK(n == SENTINEL_SIZE);
    report_out = (dtun_report *)(void *)&sentinel_storage[0];
    CHECK_STATUS(dtun_conn_report((dtun_conn *)(void *)config, &report_out),
                 DTUN_ERR_INVALID_ARGUMENT);
    CHECK(report_out == (dtun_report *)(void *)&sentinel_storage[0]);
    CHECK(dtun_report_text((dtun_report *)(void *)config) == NULL);
    CHECK(dtun_report_get((dtun_report *)(void *)config, "outcome") == NULL);
    dtun_close((dtun_conn *)(void *)config);
    dtun_report_free((dtun_report *)(void *)config);

    /* A connection where a config or a report is expected. */
    conn_out = SENTINEL_CONN;
    CHECK_STATUS(dtun_open((dtun_config *)(void *)conn, TEST_OPEN_TIMEOUT_MS, &conn_out),
                 DTUN_ERR_INVALID_ARGUMENT);
    check_message_mentions("dtun_config");
    CHECK(conn_out == SENTINEL_CONN);
    CHECK_STATUS(dtun_config_set((dtun_config *)(void *)conn, "collector", "x"),
                 DTUN_ERR_INVALID_ARGUMENT);
    CHECK(dtun_report_text((dtun_report *)(void *)conn) == NULL);
    dtun_config_free((dtun_config *)(void *)conn);
    dtun_report_free((dtun_report *)(void *)conn);

    /* A report where a config or a connection is expected. */
    CHECK_STATUS(dtun_config_set((dtun_config *)(void *)report, "collector", "x"),
                 DTUN_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(dtun_send((dtun_conn *)(void *)report, buf, 1, &n, 100),
                 DTUN_ERR_INVALID_ARGUMENT);
    CHECK(n == SENTINEL_SIZE);
    dtun_config_free((dtun_config *)(void *)report);
    dtun_close((dtun_conn *)(void *)report);

    /* All three still work. */
    report_value(report, "outcome", "DTUN_OK");
    CHECK(dtun_report_text(report) != NULL);
    echo_check(conn, 2000, 5);
    dtun_close(conn);
    CHECK_OK(dtun_open(config, TEST_OPEN_TIMEOUT_MS, &conn));
    echo_check(conn, 100, 6);
    dtun_close(conn);
    dtun_report_free(report);
    dtun_config_free(config);
}

static void test_set_logger_arguments(void)
{
    /* Turning logging off when it is off, and odd levels, are harmless. */
    dtun_set_logger(NULL, NULL, DTUN_LOG_TRACE);
    dtun_set_logger(NULL, NULL, (dtun_log_level)0);
    dtun_set_logger(NULL, NULL, (dtun_log_level)99);
    CHECK(strcmp(dtun_last_error(), "") == 0);
}

int main(void)
{
    fill_fake_handle();
    test_version();
    test_status_names();
    test_last_error();
    test_config_new_and_free();
    test_config_from_file();
    test_config_from_yaml();
    test_config_set();
    test_open_send_recv_close();
    test_reports();
    test_wrong_type_handles();
    test_set_logger_arguments();
    CHECK_FAKE_UNTOUCHED();
    test_note("all API checks passed");
    return 0;
}
