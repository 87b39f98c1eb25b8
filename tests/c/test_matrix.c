/*
 * The scenario matrix through the C API: every dragent.yaml the test environment wrote is
 * opened and must end with the one status this table expects for it. Tunnels that open carry
 * data (an echo, or framed messages and their acknowledgements).
 *
 * A scenario file without an entry here fails the test: a new scenario must come with its
 * expected status. An entry marked `required` whose file is missing fails too: the environment
 * lost a scenario. The real squid and tinyproxy scenarios are written only by
 * `dtun-testenv run --real-proxies`; ctest runs this test both ways.
 *
 * The environment also writes expected.txt ("FILE STATUS_NAME" lines, its own view of each
 * scenario): every line must agree with this table, so the two cannot drift apart unnoticed.
 *
 * All along, a logger at TRACE receives every record, and neither a record, nor a
 * dtun_last_error(), nor an open report may contain a password of env.txt or the Base64 of
 * user:password. Each open's report must agree with dtun_open and, after a failure, say what
 * to change.
 */

#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

enum traffic {
    NO_TRAFFIC, /* the open fails */
    ECHO,       /* an echo collector: bytes come back */
    FRAMED      /* the framed collector: messages are acknowledged */
};

struct expectation {
    const char *file;
    dtun_status status;
    enum traffic traffic;
    int required;
    /* 0: TEST_OPEN_TIMEOUT_MS. */
    int32_t open_timeout_ms;
};

static const struct expectation expectations[] = {
    /* The in-repo proxy and collectors: routes that work... */
    {"direct_tls.yaml", DTUN_OK, ECHO, 1, 0},
    {"direct_plain.yaml", DTUN_OK, ECHO, 1, 0},
    {"proxy_plain.yaml", DTUN_OK, ECHO, 1, 0},
    {"proxy_tls.yaml", DTUN_OK, ECHO, 1, 0},
    {"proxy_tls_auth.yaml", DTUN_OK, ECHO, 1, 0},
    {"proxy_plain_collector_plain.yaml", DTUN_OK, ECHO, 1, 0},
    {"collector_noverify.yaml", DTUN_OK, ECHO, 1, 0},
    {"framed.yaml", DTUN_OK, FRAMED, 1, 0},
    /* ...and each failure mode. */
    {"proxy_auth_wrong.yaml", DTUN_ERR_PROXY_AUTH, NO_TRAFFIC, 1, 0},
    {"proxy_403.yaml", DTUN_ERR_PROXY_REFUSED, NO_TRAFFIC, 1, 0},
    {"proxy_auth_ntlm.yaml", DTUN_ERR_PROXY_AUTH, NO_TRAFFIC, 1, 0},
    /* The silent proxy never answers: only a short deadline keeps the test short. */
    {"proxy_silent.yaml", DTUN_ERR_TIMEOUT, NO_TRAFFIC, 1, 1000},
    {"proxy_garbage.yaml", DTUN_ERR_PROXY_PROTOCOL, NO_TRAFFIC, 1, 0},
    {"collector_untrusted.yaml", DTUN_ERR_COLLECTOR_CERT, NO_TRAFFIC, 1, 0},
    {"collector_expired.yaml", DTUN_ERR_COLLECTOR_CERT, NO_TRAFFIC, 1, 0},
    {"collector_wrong_name.yaml", DTUN_ERR_COLLECTOR_CERT, NO_TRAFFIC, 1, 0},
    {"proxy_cert_untrusted.yaml", DTUN_ERR_PROXY_CERT, NO_TRAFFIC, 1, 0},
    {"proxy_tls_on_plain_port.yaml", DTUN_ERR_PROXY_TLS, NO_TRAFFIC, 1, 0},
    {"refused.yaml", DTUN_ERR_CONNECT, NO_TRAFFIC, 1, 0},

    /* A real squid: the documentation's three examples, then every route and failure. */
    {"squid_example1.yaml", DTUN_OK, ECHO, 0, 0},
    {"squid_example2.yaml", DTUN_OK, ECHO, 0, 0},
    {"squid_example3.yaml", DTUN_OK, ECHO, 0, 0},
    {"squid_plain_auth.yaml", DTUN_OK, ECHO, 0, 0},
    {"squid_plain_collector.yaml", DTUN_OK, ECHO, 0, 0},
    {"squid_noverify_both.yaml", DTUN_OK, ECHO, 0, 0},
    {"squid_framed.yaml", DTUN_OK, FRAMED, 0, 0},
    {"squid_auth_missing.yaml", DTUN_ERR_PROXY_AUTH, NO_TRAFFIC, 0, 0},
    {"squid_auth_wrong.yaml", DTUN_ERR_PROXY_AUTH, NO_TRAFFIC, 0, 0},
    {"squid_denied_port.yaml", DTUN_ERR_PROXY_REFUSED, NO_TRAFFIC, 0, 0},
    {"squid_tls_on_plain_port.yaml", DTUN_ERR_PROXY_TLS, NO_TRAFFIC, 0, 0},
    {"squid_plain_on_tls_port.yaml", DTUN_ERR_PROXY_PROTOCOL, NO_TRAFFIC, 0, 0},
    {"squid_proxy_cert_untrusted.yaml", DTUN_ERR_PROXY_CERT, NO_TRAFFIC, 0, 0},
    {"squid_collector_untrusted.yaml", DTUN_ERR_COLLECTOR_CERT, NO_TRAFFIC, 0, 0},
    {"squid_collector_expired.yaml", DTUN_ERR_COLLECTOR_CERT, NO_TRAFFIC, 0, 0},
    {"squid_collector_wrong_name.yaml", DTUN_ERR_COLLECTOR_CERT, NO_TRAFFIC, 0, 0},
    /* A real tinyproxy (it answers HTTP/1.0 200), without and with Basic auth. */
    {"tinyproxy_plain.yaml", DTUN_OK, ECHO, 0, 0},
    {"tinyproxy_auth.yaml", DTUN_OK, ECHO, 0, 0},
    {"tinyproxy_plain_collector.yaml", DTUN_OK, ECHO, 0, 0},
    {"tinyproxy_auth_wrong.yaml", DTUN_ERR_PROXY_AUTH, NO_TRAFFIC, 0, 0},
};

#define N_EXPECTATIONS (sizeof expectations / sizeof expectations[0])

/* ---- secrets: nothing the library says may contain one ------------------------------------ */

static pthread_mutex_t leak_lock = PTHREAD_MUTEX_INITIALIZER;
static char leak[1024];
static unsigned records;





static void on_log(void *userdata, dtun_log_level level, const char *message)
{
    (void)userdata;
    (void)level;
    if (pthread_mutex_lock(&leak_lock) != 0) {
        test_fail(__FILE__, __LINE__, "pthread_mutex_lock failed");
    }
    records++;
    if (leak[0] == '\0' && secrets_find(message) != NULL) {
        (void)snprintf(leak, sizeof leak, "%s", message);
    }
    if (pthread_mutex_unlock(&leak_lock) != 0) {
        test_fail(__FILE__, __LINE__, "pthread_mutex_unlock failed");
    }
}

/* ---- the table, the folder and expected.txt ----------------------------------------------- */

static const struct expectation *find_expectation(const char *file)
{
    size_t i;
    for (i = 0; i < N_EXPECTATIONS; i++) {
        if (strcmp(expectations[i].file, file) == 0) {
            return &expectations[i];
        }
    }
    return NULL;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The names of the scenario files in the environment folder, sorted (stable output). */
static char **list_scenarios(size_t *count)
{
    DIR *dir = opendir(testenv_dir());
    struct dirent *entry;
    char **names = NULL;
    size_t n = 0;
    size_t cap = 0;
    if (dir == NULL) {
        test_fail(__FILE__, __LINE__, "cannot open %s", testenv_dir());
    }
    while ((entry = readdir(dir)) != NULL) {
        if (!str_ends_with(entry->d_name, ".yaml")) {
            continue;
        }
        if (n == cap) {
            char **grown;
            cap = cap == 0 ? 64 : cap * 2;
            grown = (char **)realloc(names, cap * sizeof *names);
            if (grown == NULL) {
                test_fail(__FILE__, __LINE__, "out of memory");
            }
            names = grown;
        }
        names[n] = strdup(entry->d_name);
        if (names[n] == NULL) {
            test_fail(__FILE__, __LINE__, "out of memory");
        }
        n++;
    }
    if (closedir(dir) != 0) {
        test_fail(__FILE__, __LINE__, "cannot close %s", testenv_dir());
    }
    if (n > 0) {
        qsort(names, n, sizeof *names, compare_names);
    }
    *count = n;
    return names;
}

/* Compares expected.txt, when the environment wrote one, with the table. Returns the number
 * of disagreements. */
static int check_expected_txt(void)
{
    char path[4096];
    char line[512];
    FILE *f;
    int disagreements = 0;
    testenv_path(path, sizeof path, "expected.txt");
    f = fopen(path, "r");
    if (f == NULL) {
        test_note("no expected.txt in the environment: nothing to cross-check");
        return 0;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        char file[256];
        char status[128];
        const struct expectation *want;
        if (sscanf(line, "%255s %127s", file, status) != 2) {
            continue;
        }
        want = find_expectation(file);
        if (want == NULL) {
            fprintf(stderr, "FAIL %s: expected.txt lists it, the table in "
                            "tests/c/test_matrix.c does not\n", file);
            disagreements++;
        } else if (strcmp(dtun_status_name(want->status), status) != 0) {
            fprintf(stderr, "FAIL %s: expected.txt says %s, tests/c/test_matrix.c says %s\n",
                    file, status, dtun_status_name(want->status));
            disagreements++;
        }
    }
    if (ferror(f)) {
        test_fail(__FILE__, __LINE__, "cannot read %s", path);
    }
    if (fclose(f) != 0) {
        test_fail(__FILE__, __LINE__, "cannot close %s", path);
    }
    return disagreements;
}

/* ---- one scenario --------------------------------------------------------------------------- */

/* The report of the open that just ran (this thread's latest): it names the same outcome,
 * says what to change after a failure, and holds no secret. Returns 1 when it does. */
static int check_report(const char *file, dtun_status got)
{
    dtun_report *report = NULL;
    const char *outcome;
    const char *hint;
    const char *text;
    int ok = 1;
    if (dtun_last_open_report(&report) != DTUN_OK) {
        fprintf(stderr, "FAIL %s: no open report: %s\n", file, dtun_last_error());
        return 0;
    }
    outcome = dtun_report_get(report, "outcome");
    hint = dtun_report_get(report, "hint");
    text = dtun_report_text(report);
    if (outcome == NULL || strcmp(outcome, dtun_status_name(got)) != 0) {
        fprintf(stderr, "FAIL %s: the report's outcome is %s, dtun_open returned %s\n", file,
                outcome != NULL ? outcome : "(none)", dtun_status_name(got));
        ok = 0;
    }
    if (got != DTUN_OK && (hint == NULL || hint[0] == '\0')) {
        fprintf(stderr, "FAIL %s: the report of a failed open has no hint\n", file);
        ok = 0;
    }
    if (text == NULL || secrets_find(text) != NULL) {
        fprintf(stderr, "FAIL %s: the report text is missing or holds a secret:\n%s\n", file,
                text != NULL ? text : "(none)");
        ok = 0;
    }
    dtun_report_free(report);
    return ok;
}

/* Runs one scenario; returns 1 when it behaved as expected. Failures are reported and
 * counted rather than fatal, so one run shows every scenario that is off. */
static int run_scenario(const struct expectation *want, uint32_t seed)
{
    static unsigned char sentinel;
    dtun_config *config = load_scenario(want->file);
    dtun_conn *conn = (dtun_conn *)(void *)&sentinel;
    int32_t timeout = want->open_timeout_ms != 0 ? want->open_timeout_ms : TEST_OPEN_TIMEOUT_MS;
    dtun_status got = dtun_open(config, timeout, &conn);
    const char *message = dtun_last_error();
    const char *secret = secrets_find(message);
    int ok = 1;

    if (got != want->status) {
        fprintf(stderr, "FAIL %s: got %s, expected %s; dtun_last_error: \"%s\"\n", want->file,
                dtun_status_name(got), dtun_status_name(want->status), message);
        ok = 0;
    } else {
        test_note("%-34s %-26s %s", want->file, dtun_status_name(got), message);
    }
    if (secret != NULL) {
        fprintf(stderr, "FAIL %s: dtun_last_error() holds a secret: \"%s\"\n", want->file,
                message);
        ok = 0;
    }
    if (got != DTUN_OK) {
        if (conn != (dtun_conn *)(void *)&sentinel) {
            fprintf(stderr, "FAIL %s: dtun_open wrote *out on failure\n", want->file);
            ok = 0;
        }
        if (message[0] == '\0') {
            fprintf(stderr, "FAIL %s: %s without a message\n", want->file, dtun_status_name(got));
            ok = 0;
        }
    } else {
        /* An open tunnel must carry data both ways, whatever was expected. */
        if (want->traffic == FRAMED) {
            framed_check(conn, 1, 100);
            framed_check(conn, 2, 70000);
        } else {
            echo_check(conn, 70000, seed);
        }
        dtun_close(conn);
    }
    /* Last: its dtun_ calls replace the dtun_last_error() that `message` points to. */
    ok &= check_report(want->file, got);
    dtun_config_free(config);
    return ok;
}

int main(void)
{
    size_t count = 0;
    char **names;
    size_t i;
    int failures = 0;

    secrets_collect();
    dtun_set_logger(on_log, NULL, DTUN_LOG_TRACE);

    names = list_scenarios(&count);
    test_note("%zu scenario files in %s", count, testenv_dir());
    for (i = 0; i < count; i++) {
        const struct expectation *want = find_expectation(names[i]);
        if (want == NULL) {
            fprintf(stderr, "FAIL %s: no expected status for this scenario: add it to the table "
                            "in tests/c/test_matrix.c\n", names[i]);
            failures++;
            continue;
        }
        if (!run_scenario(want, (uint32_t)i)) {
            failures++;
        }
    }
    for (i = 0; i < N_EXPECTATIONS; i++) {
        const char *file = expectations[i].file;
        if (expectations[i].required &&
            (count == 0 || bsearch(&file, names, count, sizeof *names, compare_names) == NULL)) {
            fprintf(stderr, "FAIL %s: the environment did not write this scenario\n", file);
            failures++;
        }
    }
    failures += check_expected_txt();

    dtun_set_logger(NULL, NULL, DTUN_LOG_TRACE);
    if (leak[0] != '\0') {
        fprintf(stderr, "FAIL: a log record holds a secret: \"%s\"\n", leak);
        failures++;
    }
    test_note("%u log records at TRACE, none with a password or its Base64 (%zu secrets)",
              records, secrets_count());

    for (i = 0; i < count; i++) {
        free(names[i]);
    }
    free(names);
    secrets_free();
    if (failures > 0) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    test_note("all %zu scenarios behaved as expected", count);
    return 0;
}
