/*
 * The reconnect policy through the C API (issue 13): argument checks, NULL handles, delays
 * within their windows, configuration failures at the slow floor, reset, and the last error
 * left alone by a successful dtun_backoff_next. Needs no test environment.
 */

#include <stdio.h>
#include <string.h>

#include "support.h"

static void invalid_arguments(void)
{
    dtun_backoff *b = NULL;
    CHECK_STATUS(dtun_backoff_new(0, 10, &b), DTUN_ERR_INVALID_ARGUMENT);
    CHECK(b == NULL);
    CHECK(strstr(dtun_last_error(), "min_ms") != NULL);
    CHECK_STATUS(dtun_backoff_new(11, 10, &b), DTUN_ERR_INVALID_ARGUMENT);
    CHECK(b == NULL);
    CHECK_STATUS(dtun_backoff_new(1, 2, NULL), DTUN_ERR_INVALID_ARGUMENT);
    CHECK(dtun_backoff_next(NULL, DTUN_ERR_CONNECT) == DTUN_BACKOFF_FALLBACK_MS);
    CHECK(strstr(dtun_last_error(), "dtun_backoff is NULL") != NULL);
    dtun_backoff_reset(NULL);
    dtun_backoff_free(NULL);
    test_note("invalid arguments refused; NULL handles are no-ops or the fallback delay");
}

static void windows_floor_and_reset(void)
{
    dtun_backoff *b = NULL;
    int round;
    CHECK_OK(dtun_backoff_new(100, 5000, &b));
    for (round = 0; round < 3; round++) {
        uint32_t n;
        for (n = 0; n < 12; n++) {
            uint64_t ceiling = (uint64_t)100 << (n + 1);
            uint32_t d = dtun_backoff_next(b, DTUN_ERR_CONNECT);
            if (ceiling > 5000) {
                ceiling = 5000;
            }
            if (d < 100 || d > ceiling) {
                test_fail(__FILE__, __LINE__, "attempt %u: %u ms not in [100, %u]", (unsigned)n,
                          (unsigned)d, (unsigned)ceiling);
            }
            if (round == 0) {
                test_note("network failure %u: wait %u ms", (unsigned)n, (unsigned)d);
            }
        }
        dtun_backoff_reset(b);
    }
    CHECK(dtun_backoff_next(b, DTUN_ERR_PROXY_AUTH) == 5000);
    CHECK(dtun_backoff_next(b, DTUN_ERR_PROXY_CERT) == 5000);
    CHECK(dtun_backoff_next(b, DTUN_ERR_COLLECTOR_CERT) == 5000);
    CHECK(dtun_backoff_next(b, DTUN_ERR_CONFIG) == 5000);
    dtun_backoff_free(b);
    test_note("configuration failures wait max_ms at once");
}

static void last_error_survives(void)
{
    static const char yaml[] = "collector_port: 70000";
    dtun_config *cfg = NULL;
    dtun_backoff *b = NULL;
    char before[512];
    CHECK_OK(dtun_backoff_new(10, 20, &b));
    CHECK_STATUS(dtun_config_from_yaml(yaml, sizeof yaml - 1, &cfg), DTUN_ERR_CONFIG);
    snprintf(before, sizeof before, "%s", dtun_last_error());
    (void)dtun_backoff_next(b, DTUN_ERR_CONFIG);
    CHECK(strcmp(before, dtun_last_error()) == 0);
    dtun_backoff_free(b);
    test_note("dtun_backoff_next leaves dtun_last_error() alone");
}

int main(void)
{
    invalid_arguments();
    windows_floor_and_reset();
    last_error_survives();
    printf("test_backoff: ok\n");
    return 0;
}
