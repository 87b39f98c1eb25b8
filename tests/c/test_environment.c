/*
 * The proxy from the environment (issue 13), from C: this process sets https_proxy itself
 * (https:// to the in-repo TLS proxy with Basic auth, the password percent-encoded byte by
 * byte), opens with http_proxy.from_environment and a secret extra header, and checks that
 * no message, report or log record shows the password, its encoded form, the Basic token or
 * the header value; then a wrong password and a refused URL, named by their variable.
 */

#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

#define HEADER_SECRET "Env-Tenant-Token-3d5f"

static int records;

static void on_log(void *userdata, dtun_log_level level, const char *message)
{
    const char *leak = secrets_find(message);
    (void)userdata;
    (void)level;
    records++;
    if (leak != NULL) {
        test_fail(__FILE__, __LINE__, "a log record holds \"%s\" of a secret: %s", leak, message);
    }
}

/* Every byte as %XX. */
static void percent_encode(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (; *in != '\0'; in++) {
        CHECK(o + 4 <= cap);
        snprintf(out + o, cap - o, "%%%02X", (unsigned)(unsigned char)*in);
        o += 3;
    }
    out[o] = '\0';
}

static void set_proxy_url(const char *scheme, const char *password)
{
    char encoded[1024];
    char url[1400];
    int n;
    percent_encode(password, encoded, sizeof encoded);
    n = snprintf(url, sizeof url, "%s://%s:%s@localhost:%s", scheme, testenv_value("PROXY_USER"),
                 encoded, testenv_value("PROXY_TLS_AUTH_PORT"));
    CHECK(n > 0 && (size_t)n < sizeof url);
    CHECK(setenv("https_proxy", url, 1) == 0);
}

static dtun_config *env_config(dtun_status want)
{
    char yaml[2048];
    dtun_config *cfg = NULL;
    int n = snprintf(yaml, sizeof yaml,
                     "collector: localhost\ncollector_port: %s\nca_certificate: %s\n"
                     "http_proxy:\n  from_environment: true\n  ca_certificate: %s\n"
                     "  headers:\n    X-Tenant: %s\n",
                     testenv_value("ECHO_TLS_PORT"), testenv_value("CA"), testenv_value("CA"),
                     HEADER_SECRET);
    CHECK(n > 0 && (size_t)n < sizeof yaml);
    CHECK_STATUS(dtun_config_from_yaml(yaml, (size_t)n, &cfg), want);
    return cfg;
}

static void check_clean(const char *what, const char *text)
{
    const char *leak = secrets_find(text);
    if (leak != NULL) {
        test_fail(__FILE__, __LINE__, "%s holds \"%s\" of a secret: %s", what, leak, text);
    }
}

int main(void)
{
    static const char *unset[] = {"HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy",
                                  "NO_PROXY",    "http_proxy", "HTTP_PROXY"};
    char encoded[1024];
    dtun_config *cfg;
    dtun_conn *conn = NULL;
    dtun_report *report = NULL;
    dtun_backoff *backoff = NULL;
    const char *route;
    size_t i;

    secrets_collect();
    percent_encode(testenv_value("PROXY_PASSWORD"), encoded, sizeof encoded);
    secrets_add(encoded);
    percent_encode(testenv_value("WRONG_PASSWORD"), encoded, sizeof encoded);
    secrets_add(encoded);
    secrets_add(HEADER_SECRET);
    for (i = 0; i < sizeof unset / sizeof unset[0]; i++) {
        CHECK(unsetenv(unset[i]) == 0);
    }
    dtun_set_logger(on_log, NULL, DTUN_LOG_TRACE);

    /* The right password: the tunnel opens through the environment's TLS proxy. */
    set_proxy_url("https", testenv_value("PROXY_PASSWORD"));
    cfg = env_config(DTUN_OK);
    CHECK_OK(dtun_open(cfg, TEST_OPEN_TIMEOUT_MS, &conn));
    echo_check(conn, 4096, 13);
    CHECK_OK(dtun_conn_report(conn, &report));
    route = dtun_report_get(report, "route");
    CHECK(route != NULL && strstr(route, "from environment https_proxy") != NULL);
    CHECK(strcmp(dtun_report_get(report, "proxy.source"), "environment https_proxy") == 0);
    check_clean("the report", dtun_report_text(report));
    test_note("route: %s", route);
    dtun_report_free(report);
    dtun_close(conn);
    dtun_config_free(cfg);

    /* A wrong password: PROXY_AUTH, and the backoff goes to its floor. */
    CHECK_OK(dtun_backoff_new(100, 3000, &backoff));
    set_proxy_url("https", testenv_value("WRONG_PASSWORD"));
    cfg = env_config(DTUN_OK);
    conn = NULL;
    CHECK_STATUS(dtun_open(cfg, TEST_OPEN_TIMEOUT_MS, &conn), DTUN_ERR_PROXY_AUTH);
    check_clean("dtun_last_error()", dtun_last_error());
    CHECK(dtun_backoff_next(backoff, DTUN_ERR_PROXY_AUTH) == 3000);
    CHECK_OK(dtun_last_open_report(&report));
    check_clean("the failed open's report", dtun_report_text(report));
    dtun_report_free(report);
    dtun_config_free(cfg);
    dtun_backoff_free(backoff);

    /* A URL that is refused names its variable, never the password. */
    set_proxy_url("socks5", testenv_value("PROXY_PASSWORD"));
    (void)env_config(DTUN_ERR_CONFIG);
    CHECK(strncmp(dtun_last_error(), "https_proxy: ", 13) == 0);
    check_clean("dtun_last_error()", dtun_last_error());
    test_note("refused: %s", dtun_last_error());

    CHECK(unsetenv("https_proxy") == 0);
    dtun_set_logger(NULL, NULL, DTUN_LOG_ERROR);
    CHECK(records > 0);
    test_note("%d log records at TRACE, none with a secret (%zu secrets)", records,
              secrets_count());
    printf("test_environment: ok\n");
    return 0;
}
