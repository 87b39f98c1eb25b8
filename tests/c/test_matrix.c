/*
 * The scenario matrix through the C API: every dragent.yaml the test environment wrote is
 * opened and must end with the one status this table expects for it. Tunnels that open carry
 * data (an echo, or framed messages and their acknowledgements).
 *
 *   test_matrix [--real-proxies] [--negotiate]
 *
 * A scenario file without an entry here fails the test: a new scenario must come with its
 * expected status. An entry whose file is missing fails too: the environment lost a scenario.
 * The squid and tinyproxy scenarios (REAL below; NTLM through squid and testenv's pyspnego
 * helper among them) are written only by `dtun-testenv run --real-proxies`, the Negotiate
 * ones (NEGOTIATE: a real KDC and squid's negotiate_kerberos_auth) only by
 * `dtun-testenv run --negotiate`, and the modes are explicit: with --real-proxies every REAL
 * scenario must be there, without it none may be, and the same for --negotiate (ctest runs
 * this test in each mode, and a run that quietly lost its real proxies would otherwise pass
 * as the in-repo matrix). --negotiate needs a library built with the gssapi feature.
 *
 * Kerberos takes its credential cache from the process environment (KRB5CCNAME), which a
 * process cannot change safely while the library's threads run: each Negotiate scenario runs
 * in a process of its own (this program again, `test_matrix --scenario FILE`), with
 * KRB5CCNAME naming the cache the scenario is for: the one with the user's ticket, an empty
 * one for `*_no_ticket.yaml`, one of its own for the keytab's tickets for `*_keytab.yaml`
 * (env.txt's KRB5_CCNAME, KRB5_EMPTY_CCNAME, KRB5_KEYTAB_CCNAME).
 *
 * The environment also writes expected.txt ("FILE STATUS_NAME" lines, its own view of each
 * scenario): it must exist, list every scenario file of the folder and no other, and agree
 * with this table, so the two cannot drift apart unnoticed.
 *
 * All along, a logger at TRACE receives every record, and neither a record, nor a
 * dtun_last_error(), nor an open report may contain a password of env.txt or the Base64 of
 * user:password, nor 8 characters in a row of one (secrets_find() in support.c), nor an NTLM
 * message (Base64 "TlRMTVNT", NTLMSSP) or, in a Negotiate scenario, a SPNEGO token (Base64
 * "YII"). Each open's report must agree with dtun_open and, after a failure, say what to
 * change; after an open that authenticated, it names the scheme and the number of CONNECTs.
 */

#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>

#include "support.h"

enum traffic {
    NO_TRAFFIC, /* the open fails */
    ECHO,       /* an echo collector: bytes come back */
    FRAMED      /* the framed collector: messages are acknowledged */
};

/* Which environment writes a scenario, and so which mode of test_matrix requires it. */
enum group {
    IN_REPO = 0,  /* always: the in-repo proxies and collectors */
    REAL = 1,     /* `dtun-testenv run --real-proxies`: squid and tinyproxy, test_matrix
                   * --real-proxies */
    NEGOTIATE = 2 /* `dtun-testenv run --negotiate`: a KDC and squid, test_matrix --negotiate */
};

struct expectation {
    const char *file;
    dtun_status status;
    enum traffic traffic;
    enum group group;
    /* 0: TEST_OPEN_TIMEOUT_MS. */
    int32_t open_timeout_ms;
};

static const struct expectation expectations[] = {
    /* The in-repo proxy and collectors: routes that work... */
    {"direct_tls.yaml", DTUN_OK, ECHO, 0, 0},
    {"direct_plain.yaml", DTUN_OK, ECHO, 0, 0},
    {"proxy_plain.yaml", DTUN_OK, ECHO, 0, 0},
    {"proxy_tls.yaml", DTUN_OK, ECHO, 0, 0},
    {"proxy_tls_auth.yaml", DTUN_OK, ECHO, 0, 0},
    {"proxy_plain_collector_plain.yaml", DTUN_OK, ECHO, 0, 0},
    {"collector_noverify.yaml", DTUN_OK, ECHO, 0, 0},
    {"framed.yaml", DTUN_OK, FRAMED, 0, 0},
    /* ...and each failure mode. */
    {"proxy_auth_wrong.yaml", DTUN_ERR_PROXY_AUTH, NO_TRAFFIC, 0, 0},
    {"proxy_403.yaml", DTUN_ERR_PROXY_REFUSED, NO_TRAFFIC, 0, 0},
    {"proxy_auth_ntlm.yaml", DTUN_ERR_PROXY_AUTH, NO_TRAFFIC, 0, 0},
    /* Digest (issue 12) through the in-repo proxy: kept alive, any, wrong password, and TLS to
     * a proxy that closes after its 407 (the reconnect path). */
    {"proxy_digest.yaml", DTUN_OK, ECHO, 0, 0},
    {"proxy_digest_any.yaml", DTUN_OK, ECHO, 0, 0},
    {"proxy_digest_wrong.yaml", DTUN_ERR_PROXY_AUTH, NO_TRAFFIC, 0, 0},
    {"proxy_tls_digest.yaml", DTUN_OK, ECHO, 0, 0},
    /* The silent proxy never answers: only a short deadline keeps the test short. */
    {"proxy_silent.yaml", DTUN_ERR_TIMEOUT, NO_TRAFFIC, 0, 1000},
    {"proxy_garbage.yaml", DTUN_ERR_PROXY_PROTOCOL, NO_TRAFFIC, 0, 0},
    {"collector_untrusted.yaml", DTUN_ERR_COLLECTOR_CERT, NO_TRAFFIC, 0, 0},
    {"collector_expired.yaml", DTUN_ERR_COLLECTOR_CERT, NO_TRAFFIC, 0, 0},
    {"collector_wrong_name.yaml", DTUN_ERR_COLLECTOR_CERT, NO_TRAFFIC, 0, 0},
    {"proxy_cert_untrusted.yaml", DTUN_ERR_PROXY_CERT, NO_TRAFFIC, 0, 0},
    {"proxy_tls_on_plain_port.yaml", DTUN_ERR_PROXY_TLS, NO_TRAFFIC, 0, 0},
    {"refused.yaml", DTUN_ERR_CONNECT, NO_TRAFFIC, 0, 0},
    /* The proxy agent_client --reconnect outlasts (example_agent_client_reconnect_restart):
     * open here. */
    {"restart_proxy.yaml", DTUN_OK, FRAMED, IN_REPO, 0},

    /* A real squid: the documentation's three examples, then every route and failure. */
    {"squid_example1.yaml", DTUN_OK, ECHO, 1, 0},
    {"squid_example2.yaml", DTUN_OK, ECHO, 1, 0},
    {"squid_example3.yaml", DTUN_OK, ECHO, 1, 0},
    {"squid_plain_auth.yaml", DTUN_OK, ECHO, 1, 0},
    {"squid_plain_collector.yaml", DTUN_OK, ECHO, 1, 0},
    {"squid_noverify_both.yaml", DTUN_OK, ECHO, 1, 0},
    {"squid_framed.yaml", DTUN_OK, FRAMED, 1, 0},
    {"squid_auth_missing.yaml", DTUN_ERR_PROXY_AUTH, NO_TRAFFIC, 1, 0},
    {"squid_auth_wrong.yaml", DTUN_ERR_PROXY_AUTH, NO_TRAFFIC, 1, 0},
    {"squid_denied_port.yaml", DTUN_ERR_PROXY_REFUSED, NO_TRAFFIC, 1, 0},
    {"squid_tls_on_plain_port.yaml", DTUN_ERR_PROXY_TLS, NO_TRAFFIC, 1, 0},
    {"squid_plain_on_tls_port.yaml", DTUN_ERR_PROXY_PROTOCOL, NO_TRAFFIC, 1, 0},
    {"squid_proxy_cert_untrusted.yaml", DTUN_ERR_PROXY_CERT, NO_TRAFFIC, 1, 0},
    {"squid_collector_untrusted.yaml", DTUN_ERR_COLLECTOR_CERT, NO_TRAFFIC, 1, 0},
    {"squid_collector_expired.yaml", DTUN_ERR_COLLECTOR_CERT, NO_TRAFFIC, 1, 0},
    {"squid_collector_wrong_name.yaml", DTUN_ERR_COLLECTOR_CERT, NO_TRAFFIC, 1, 0},
    /* A real tinyproxy (it answers HTTP/1.0 200), without and with Basic auth. */
    {"tinyproxy_plain.yaml", DTUN_OK, ECHO, 1, 0},
    {"tinyproxy_auth.yaml", DTUN_OK, ECHO, 1, 0},
    {"tinyproxy_plain_collector.yaml", DTUN_OK, ECHO, 1, 0},
    {"tinyproxy_auth_wrong.yaml", DTUN_ERR_PROXY_AUTH, NO_TRAFFIC, 1, 0},
    /* NTLMv2 (issue 12) through a real squid whose helper (pyspnego) checks the password:
     * plain and TLS to the proxy, TLS to the collector inside, proxy_auth ntlm and any. */
    {"squid_ntlm_plain.yaml", DTUN_OK, ECHO, REAL, 0},
    {"squid_ntlm_tls.yaml", DTUN_OK, ECHO, REAL, 0},
    {"squid_ntlm_any.yaml", DTUN_OK, ECHO, REAL, 0},
    {"squid_ntlm_tls_any.yaml", DTUN_OK, ECHO, REAL, 0},
    {"squid_ntlm_wrong.yaml", DTUN_ERR_PROXY_AUTH, NO_TRAFFIC, REAL, 0},
    {"squid_ntlm_tls_any_wrong.yaml", DTUN_ERR_PROXY_AUTH, NO_TRAFFIC, REAL, 0},

    /* Negotiate (Kerberos, issue 12): a real MIT KDC and squid's negotiate_kerberos_auth. The
     * user's ticket, no ticket at all, and tickets from a client keytab (proxy_keytab). */
    {"negotiate_plain.yaml", DTUN_OK, ECHO, NEGOTIATE, 0},
    {"negotiate_tls.yaml", DTUN_OK, ECHO, NEGOTIATE, 0},
    {"negotiate_any.yaml", DTUN_OK, ECHO, NEGOTIATE, 0},
    {"negotiate_tls_any.yaml", DTUN_OK, ECHO, NEGOTIATE, 0},
    {"negotiate_no_ticket.yaml", DTUN_ERR_PROXY_AUTH, NO_TRAFFIC, NEGOTIATE, 0},
    {"negotiate_tls_any_no_ticket.yaml", DTUN_ERR_PROXY_AUTH, NO_TRAFFIC, NEGOTIATE, 0},
    {"negotiate_keytab.yaml", DTUN_OK, ECHO, NEGOTIATE, 0},
    {"negotiate_tls_keytab.yaml", DTUN_OK, ECHO, NEGOTIATE, 0},
};

#define N_EXPECTATIONS (sizeof expectations / sizeof expectations[0])

/* ---- secrets: nothing the library says may contain one ------------------------------------ */

static pthread_mutex_t leak_lock = PTHREAD_MUTEX_INITIALIZER;
static char leak[1024];
static unsigned records;
/* Set while a Negotiate scenario runs (in its own process): SPNEGO tokens are looked for. */
static int negotiate_tokens;

/* The form of an authentication token whose value the test cannot know: an NTLM message
 * (Base64 of "NTLMSSP\0" starts "TlRMTVNT"), and with negotiate_tokens a SPNEGO token (DER,
 * application tag 0: Base64 "YII"). Returns what was found, or NULL. */
static const char *token_find(const char *text)
{
    if (strstr(text, "TlRMTVNT") != NULL) {
        return "TlRMTVNT";
    }
    if (negotiate_tokens && strstr(text, "YII") != NULL) {
        return "YII";
    }
    return NULL;
}

static void on_log(void *userdata, dtun_log_level level, const char *message)
{
    (void)userdata;
    (void)level;
    if (pthread_mutex_lock(&leak_lock) != 0) {
        test_fail(__FILE__, __LINE__, "pthread_mutex_lock failed");
    }
    records++;
    if (leak[0] == '\0' && (secrets_find(message) != NULL || token_find(message) != NULL)) {
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

/* The position of file in names (count of them, sorted), or count when it is not there. */
static size_t scenario_index(const char *file, char **names, size_t count)
{
    char **found;
    if (count == 0) {
        return 0;
    }
    found = (char **)bsearch(&file, names, count, sizeof *names, compare_names);
    return found != NULL ? (size_t)(found - names) : count;
}

/* Compares expected.txt with the table and with the scenario files of the folder (names,
 * sorted). Returns the number of disagreements; a missing expected.txt is one. */
static int check_expected_txt(char **names, size_t count)
{
    char path[4096];
    char line[512];
    FILE *f;
    int disagreements = 0;
    unsigned char *seen;
    size_t lines = 0;
    size_t i;
    testenv_path(path, sizeof path, "expected.txt");
    f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "FAIL expected.txt: the environment did not write %s\n", path);
        return 1;
    }
    seen = (unsigned char *)calloc(count + 1, 1); /* + 1: never calloc(0) */
    if (seen == NULL) {
        test_fail(__FILE__, __LINE__, "out of memory");
    }
    while (fgets(line, sizeof line, f) != NULL) {
        char file[256];
        char status[128];
        char extra[2];
        const struct expectation *want;
        size_t at;
        lines++;
        if (sscanf(line, "%255s %127s %1s", file, status, extra) != 2) {
            fprintf(stderr, "FAIL expected.txt line %zu is not \"FILE STATUS_NAME\": %s", lines,
                    line);
            disagreements++;
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
        at = scenario_index(file, names, count);
        if (at == count) {
            fprintf(stderr, "FAIL %s: expected.txt lists it, the folder has no such file\n", file);
            disagreements++;
        } else {
            seen[at] = 1;
        }
    }
    if (ferror(f)) {
        test_fail(__FILE__, __LINE__, "cannot read %s", path);
    }
    if (fclose(f) != 0) {
        test_fail(__FILE__, __LINE__, "cannot close %s", path);
    }
    for (i = 0; i < count; i++) {
        if (!seen[i]) {
            fprintf(stderr, "FAIL %s: a scenario file that expected.txt does not list\n",
                    names[i]);
            disagreements++;
        }
    }
    free(seen);
    test_note("expected.txt: %zu lines, %d disagreement(s) with the table and the folder", lines,
              disagreements);
    return disagreements;
}

/* ---- one scenario --------------------------------------------------------------------------- */

/* The scheme a scenario authenticates with, the number of CONNECTs that takes, and what its
 * failure's message and hint must say; scheme NULL: nothing to check. */
struct scheme_check {
    const char *scheme;
    const char *rounds;
    const char *message_has[2];
    const char *hint_has;
};

static struct scheme_check scheme_of(const char *file)
{
    struct scheme_check c = {NULL, NULL, {NULL, NULL}, NULL};
    if (strncmp(file, "proxy_digest", 12) == 0 || strncmp(file, "proxy_tls_digest", 16) == 0) {
        c.scheme = "Digest";
        c.rounds = "2";
    } else if (strncmp(file, "squid_ntlm_", 11) == 0) {
        /* The probe, the NEGOTIATE message, the AUTHENTICATE message. */
        c.scheme = "NTLM";
        c.rounds = "3";
        c.message_has[0] = "NTLM credentials";
        c.hint_has = "DOMAIN\\user";
    } else if (strncmp(file, "negotiate_", 10) == 0) {
        /* The probe, the token. */
        c.scheme = "Negotiate";
        c.rounds = "2";
        c.message_has[0] = "kinit";
        c.message_has[1] = "KRB5CCNAME";
        c.hint_has = "kinit";
    }
    return c;
}

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
    /* A Digest answer (its response= and the rest of the Proxy-Authorization value) is a
     * secret whose value the test cannot know: its form must not appear either. */
    if (text != NULL &&
        (strstr(text, "response=") != NULL || strstr(text, "Digest username") != NULL)) {
        fprintf(stderr, "FAIL %s: the report text holds a Digest answer:\n%s\n", file, text);
        ok = 0;
    }
    if (text != NULL && token_find(text) != NULL) {
        fprintf(stderr, "FAIL %s: the report text holds an NTLM or SPNEGO token:\n%s\n", file,
                text);
        ok = 0;
    }
    {
        struct scheme_check want = scheme_of(file);
        if (want.scheme != NULL && got == DTUN_OK) {
            /* The report says which scheme answered and in how many CONNECTs. */
            const char *scheme = dtun_report_get(report, "proxy.auth_scheme");
            const char *rounds = dtun_report_get(report, "proxy.auth_rounds");
            if (scheme == NULL || strcmp(scheme, want.scheme) != 0 || rounds == NULL ||
                strcmp(rounds, want.rounds) != 0) {
                fprintf(stderr, "FAIL %s: proxy.auth_scheme %s, proxy.auth_rounds %s (expected "
                                "%s, %s)\n",
                        file, scheme != NULL ? scheme : "(none)",
                        rounds != NULL ? rounds : "(none)", want.scheme, want.rounds);
                ok = 0;
            }
        }
        if (want.hint_has != NULL && got != DTUN_OK &&
            (hint == NULL || strstr(hint, want.hint_has) == NULL)) {
            fprintf(stderr, "FAIL %s: the hint does not say \"%s\": %s\n", file, want.hint_has,
                    hint != NULL ? hint : "(none)");
            ok = 0;
        }
    }
    dtun_report_free(report);
    return ok;
}

/* Every scenario's CONNECT carries an extra header whose value is a secret (issue 13): no
 * message, report or log record may show it, as for the password. */
#define HEADER_SECRET "Matrix-Tenant-Token-7c1e"

static int set_header_secret(dtun_config *config)
{
    dtun_status st = dtun_config_set(config, "http_proxy.headers.X-Tenant", HEADER_SECRET);
    if (st != DTUN_OK) {
        fprintf(stderr, "FAIL: dtun_config_set(http_proxy.headers.X-Tenant): %s: %s\n",
                dtun_status_name(st), dtun_last_error());
        return 0;
    }
    return 1;
}

/* Runs one scenario; returns 1 when it behaved as expected. Failures are reported and
 * counted rather than fatal, so one run shows every scenario that is off. */
static int run_scenario(const struct expectation *want, uint32_t seed)
{
    static unsigned char sentinel;
    dtun_config *config = load_scenario(want->file);
    dtun_conn *conn = (dtun_conn *)(void *)&sentinel;
    int32_t timeout = want->open_timeout_ms != 0 ? want->open_timeout_ms : TEST_OPEN_TIMEOUT_MS;
    dtun_status got = set_header_secret(config) ? dtun_open(config, timeout, &conn)
                                                : DTUN_ERR_INTERNAL;
    const char *message = dtun_last_error();
    const char *secret = secrets_find(message);
    int ok = 1;

    if (strstr(message, "response=") != NULL || token_find(message) != NULL) {
        fprintf(stderr, "FAIL %s: dtun_last_error() holds a Digest answer or an NTLM or SPNEGO "
                        "token: \"%s\"\n", want->file, message);
        ok = 0;
    }
    if (got != DTUN_OK && got == want->status) {
        /* A rejected scheme is named, with what to do about it. */
        struct scheme_check scheme = scheme_of(want->file);
        size_t k;
        for (k = 0; k < 2; k++) {
            if (scheme.message_has[k] != NULL && strstr(message, scheme.message_has[k]) == NULL) {
                fprintf(stderr, "FAIL %s: dtun_last_error() does not say \"%s\": \"%s\"\n",
                        want->file, scheme.message_has[k], message);
                ok = 0;
            }
        }
    }

    if (got != want->status) {
        fprintf(stderr, "FAIL %s: got %s, expected %s; dtun_last_error: \"%s\"\n", want->file,
                dtun_status_name(got), dtun_status_name(want->status), message);
        ok = 0;
    } else {
        test_note("%-34s %-26s %s", want->file, dtun_status_name(got), message);
    }
    if (secret != NULL) {
        fprintf(stderr, "FAIL %s: dtun_last_error() holds \"%s\" of a secret: \"%s\"\n",
                want->file, secret, message);
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

/* ---- Negotiate scenarios, each in a process of its own ------------------------------------- */

extern char **environ;

/* The env.txt key of the credential cache a Negotiate scenario is opened with. */
static const char *ccache_key(const char *file)
{
    if (str_ends_with(file, "_no_ticket.yaml")) {
        return "KRB5_EMPTY_CCNAME";
    }
    if (str_ends_with(file, "_keytab.yaml")) {
        return "KRB5_KEYTAB_CCNAME";
    }
    return "KRB5_CCNAME";
}

/* Runs `test_matrix --scenario FILE` (this program again) with KRB5CCNAME set to the
 * scenario's cache and waits for it; returns 1 when it passed. */
static int run_in_own_process(const struct expectation *want)
{
    const char *ccache = testenv_value(ccache_key(want->file));
    size_t n = 0;
    size_t i;
    size_t j = 0;
    char **env;
    char *ccache_var;
    char *args[4];
    pid_t pid;
    int status = 0;
    int err;
    size_t len = strlen("KRB5CCNAME=") + strlen(ccache) + 1;
    while (environ[n] != NULL) {
        n++;
    }
    env = (char **)calloc(n + 2, sizeof *env);
    ccache_var = (char *)malloc(len);
    if (env == NULL || ccache_var == NULL) {
        test_fail(__FILE__, __LINE__, "out of memory");
    }
    (void)snprintf(ccache_var, len, "KRB5CCNAME=%s", ccache);
    for (i = 0; i < n; i++) {
        if (strncmp(environ[i], "KRB5CCNAME=", 11) != 0) {
            env[j++] = environ[i];
        }
    }
    env[j++] = ccache_var;
    env[j] = NULL;
    args[0] = "test_matrix";
    args[1] = "--scenario";
    args[2] = (char *)want->file;
    args[3] = NULL;
    test_note("%s: in a process of its own, KRB5CCNAME from env.txt's %s", want->file,
              ccache_key(want->file));
    (void)fflush(stdout);
    (void)fflush(stderr);
    err = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, args, env);
    free(env);
    free(ccache_var);
    if (err != 0) {
        test_fail(__FILE__, __LINE__, "posix_spawn(/proc/self/exe): %s", strerror(err));
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            test_fail(__FILE__, __LINE__, "waitpid: %s", strerror(errno));
        }
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "FAIL %s: its process ended with status %d\n", want->file, status);
        return 0;
    }
    return 1;
}

/* `test_matrix --scenario FILE`: that one scenario, its log records checked as in main(). */
static int run_one(const char *file)
{
    const struct expectation *want = find_expectation(file);
    int ok;
    if (want == NULL) {
        fprintf(stderr, "FAIL %s: not in the table of tests/c/test_matrix.c\n", file);
        return 1;
    }
    secrets_collect();
    secrets_add(HEADER_SECRET);
    negotiate_tokens = want->group == NEGOTIATE;
    dtun_set_logger(on_log, NULL, DTUN_LOG_TRACE);
    ok = run_scenario(want, 0);
    dtun_set_logger(NULL, NULL, DTUN_LOG_TRACE);
    if (leak[0] != '\0') {
        fprintf(stderr, "FAIL %s: a log record holds a secret or a token: \"%s\"\n", file, leak);
        ok = 0;
    }
    test_note("%s: %u log records at TRACE, none with a secret or a token", file, records);
    secrets_free();
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    int real_mode = 0;
    int negotiate_mode = 0;
    size_t count = 0;
    char **names;
    int a;
    size_t i;
    size_t ran = 0;
    size_t ran_real = 0;
    size_t ran_negotiate = 0;
    int failures = 0;

    if (argc == 3 && strcmp(argv[1], "--scenario") == 0) {
        return run_one(argv[2]);
    }
    for (a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--real-proxies") == 0) {
            real_mode = 1;
        } else if (strcmp(argv[a], "--negotiate") == 0) {
            negotiate_mode = 1;
        } else {
            fprintf(stderr, "usage: test_matrix [--real-proxies] [--negotiate]\n");
            return 2;
        }
    }
    test_note("mode: %s", real_mode ? "--real-proxies: every squid and tinyproxy scenario is "
                                      "required"
                                    : "no squid or tinyproxy scenario may be there");
    test_note("mode: %s", negotiate_mode ? "--negotiate: every Negotiate scenario is required"
                                         : "no Negotiate scenario may be there");

    secrets_collect();
    secrets_add(HEADER_SECRET);
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
        if (want->group == REAL && !real_mode) {
            fprintf(stderr, "FAIL %s: a real-proxy scenario, but test_matrix runs without "
                            "--real-proxies (pass it inside `dtun-testenv run --real-proxies`)\n",
                    names[i]);
            failures++;
            continue;
        }
        if (want->group == NEGOTIATE && !negotiate_mode) {
            fprintf(stderr, "FAIL %s: a Negotiate scenario, but test_matrix runs without "
                            "--negotiate (pass it inside `dtun-testenv run --negotiate`)\n",
                    names[i]);
            failures++;
            continue;
        }
        if (want->group == NEGOTIATE ? !run_in_own_process(want)
                                     : !run_scenario(want, (uint32_t)i)) {
            failures++;
        }
        ran++;
        ran_real += (size_t)(want->group == REAL);
        ran_negotiate += (size_t)(want->group == NEGOTIATE);
    }
    for (i = 0; i < N_EXPECTATIONS; i++) {
        const struct expectation *want = &expectations[i];
        int required = want->group == IN_REPO || (want->group == REAL && real_mode) ||
                       (want->group == NEGOTIATE && negotiate_mode);
        if (required && scenario_index(want->file, names, count) == count) {
            fprintf(stderr, "FAIL %s: the environment did not write this %sscenario\n", want->file,
                    want->group == REAL        ? "real-proxy "
                    : want->group == NEGOTIATE ? "Negotiate "
                                               : "");
            failures++;
        }
    }
    failures += check_expected_txt(names, count);

    dtun_set_logger(NULL, NULL, DTUN_LOG_TRACE);
    if (leak[0] != '\0') {
        fprintf(stderr, "FAIL: a log record holds a secret or a token: \"%s\"\n", leak);
        failures++;
    }
    test_note("%u log records at TRACE, none with a password, its Base64 or a token (%zu "
              "secrets)",
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
    test_note("all %zu scenarios behaved as expected, %zu of them through squid or tinyproxy, "
              "%zu through squid with Negotiate",
              ran, ran_real, ran_negotiate);
    return 0;
}
