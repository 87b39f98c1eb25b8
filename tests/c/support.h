/*
 * Helpers shared by the C tests: assertions that print where and why, access to the test
 * environment that `dtun-testenv run` starts, and blocking I/O helpers over a dtun_conn.
 *
 * Every test program runs as `dtun-testenv run --dir DIR -- TEST`, which exports
 * DTUN_TESTENV_DIR; the scenario files (direct_tls.yaml...) and env.txt live there.
 */

#ifndef DTUN_TEST_SUPPORT_H
#define DTUN_TEST_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#include "dragent_tunnel.h"

/* Deadlines generous enough for valgrind (tens of times slower) and loaded CI machines;
 * a healthy open on loopback takes milliseconds. */
#define TEST_OPEN_TIMEOUT_MS 30000
#define TEST_IO_TIMEOUT_MS 30000

/* Fails the test unless cond holds. */
#define CHECK(cond)                                                                         \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            test_fail(__FILE__, __LINE__, "%s", #cond);                                     \
        }                                                                                   \
    } while (0)

/* Fails the test unless expr (a dtun_ call) returns expected; prints both status names and
 * dtun_last_error() of the call. */
#define CHECK_STATUS(expr, expected)                                                        \
    do {                                                                                    \
        dtun_status check_got_ = (expr);                                                    \
        dtun_status check_want_ = (expected);                                               \
        if (check_got_ != check_want_) {                                                    \
            test_fail_status(__FILE__, __LINE__, #expr, check_got_, check_want_);           \
        }                                                                                   \
    } while (0)

#define CHECK_OK(expr) CHECK_STATUS(expr, DTUN_OK)

/* Prints "FAIL file:line: message" (printf-style) and ends the process with status 1, from
 * any thread. */
#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 3, 4)))
#endif
void test_fail(const char *file, int line, const char *fmt, ...);

/* Prints the failed call, the status it returned, the one expected and the library's last
 * error (read first, before anything else can replace it), then ends the process. */
#if defined(__GNUC__)
__attribute__((noreturn))
#endif
void test_fail_status(const char *file, int line, const char *call, dtun_status got,
                      dtun_status want);

/* Prints a progress line on stdout ("[test] ..."), so a failure's context is in the log. */
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
void test_note(const char *fmt, ...);

/* The environment folder (DTUN_TESTENV_DIR); fails when the test was not started by
 * dtun-testenv. */
const char *testenv_dir(void);

/* Writes DIR/file into buf; fails if it does not fit. */
void testenv_path(char *buf, size_t cap, const char *file);

/* The value of KEY in DIR/env.txt (KEY=VALUE lines); fails if the key is absent. The string
 * lives until the process ends. */
const char *testenv_value(const char *key);

/* Entry i of env.txt, in file order: sets *key and *value and returns 1, or returns 0 past
 * the last entry. */
int testenv_entry(size_t i, const char **key, const char **value);

/* Loads DIR/file; fails the test if the library rejects it. */
dtun_config *load_scenario(const char *file);

/* Loads DIR/file and opens a tunnel with it; fails the test on any error. */
dtun_conn *open_scenario(const char *file);

/* Sends all len bytes (within TEST_IO_TIMEOUT_MS); fails the test otherwise. */
void send_all(dtun_conn *conn, const void *buf, size_t len);

/* Receives exactly len bytes (each dtun_recv within TEST_IO_TIMEOUT_MS); fails otherwise. */
void recv_exact(dtun_conn *conn, void *buf, size_t len);

/* Sends len bytes of a pattern derived from seed to an echo collector and checks that the
 * same bytes come back. */
void echo_check(dtun_conn *conn, size_t len, uint32_t seed);

/* Sends one framed message (version 4, type 1, payload_len bytes) to the framed collector and
 * checks its acknowledgement: sequence number seq, payload length payload_len. */
void framed_check(dtun_conn *conn, uint32_t seq, size_t payload_len);

/* Byte i of the test pattern for seed: varied enough that a lost, repeated or reordered
 * chunk shows. */
uint8_t pattern_byte(uint32_t seed, uint64_t i);

/* Standard Base64 (RFC 4648, with padding) of len bytes into out; fails if out is too small. */
void base64_encode(const void *data, size_t len, char *out, size_t cap);

/* Whether s ends with suffix. */
int str_ends_with(const char *s, const char *suffix);

/* Collects every *_PASSWORD of env.txt and the Base64 of every *_USER ":" *_PASSWORD pair,
 * and checks that secrets_find() finds each, and a cut piece of each longer one. */
void secrets_collect(void);

/* The first collected secret, or piece of one, found in text, or NULL. The rule is
 * leak_in()'s in tests/support/mod.rs: the whole secret, or any run of 8 of its characters
 * (a secret of 8 characters or fewer only whole). */
const char *secrets_find(const char *text);

/* Adds a secret of the test's own (an extra CONNECT header value, say) to those
 * secrets_find() looks for. */
void secrets_add(const char *text);

/* How many secrets were collected. */
size_t secrets_count(void);

/* Frees the collected secrets. */
void secrets_free(void);

/* The calling thread's kernel thread id. */
long current_tid(void);

/* Returns once thread tid (of this process) is blocked in epoll_wait, where a thread waiting
 * inside the library for its sockets sleeps, or also in futex when futex_too (a second thread
 * of the library's runtime waits for the first there); fails the test after 30 s. Reads
 * /proc/self/task/TID/syscall: an observation, not a guess of how long it takes. */
void wait_until_blocked(long tid, int futex_too);

#endif /* DTUN_TEST_SUPPORT_H */
