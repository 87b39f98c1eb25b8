/* Helpers shared by the C tests; see support.h. */

#define _GNU_SOURCE

#include "support.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

void test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list args;
    /* Output errors are ignored here: there is nowhere left to report them. */
    (void)fprintf(stderr, "FAIL %s:%d: ", file, line);
    va_start(args, fmt);
    (void)vfprintf(stderr, fmt, args);
    va_end(args);
    (void)fputc('\n', stderr);
    /* _Exit, not exit: another thread may be inside the library, and running exit handlers
     * under it would turn a clear failure into a hang or a crash. Flush what was printed. */
    (void)fflush(NULL);
    _Exit(1);
}

void test_fail_status(const char *file, int line, const char *call, dtun_status got,
                      dtun_status want)
{
    const char *message = dtun_last_error();
    test_fail(file, line, "%s returned %s (%d), expected %s (%d); dtun_last_error: \"%s\"", call,
              dtun_status_name(got), (int)got, dtun_status_name(want), (int)want, message);
}

void test_note(const char *fmt, ...)
{
    va_list args;
    int failed;
    failed = fputs("[test] ", stdout) < 0;
    va_start(args, fmt);
    failed |= vprintf(fmt, args) < 0;
    va_end(args);
    failed |= fputc('\n', stdout) == EOF;
    /* Flushed at once to keep stdout and stderr in order in ctest's log. */
    failed |= fflush(stdout) != 0;
    if (failed) {
        test_fail(__FILE__, __LINE__, "cannot write to stdout");
    }
}

const char *testenv_dir(void)
{
    const char *dir = getenv("DTUN_TESTENV_DIR");
    if (dir == NULL || dir[0] == '\0') {
        test_fail(__FILE__, __LINE__,
                  "DTUN_TESTENV_DIR is not set: run this test as "
                  "`dtun-testenv run --dir DIR -- TEST` (ctest does)");
    }
    return dir;
}

void testenv_path(char *buf, size_t cap, const char *file)
{
    int n = snprintf(buf, cap, "%s/%s", testenv_dir(), file);
    if (n < 0 || (size_t)n >= cap) {
        test_fail(__FILE__, __LINE__, "path of %s does not fit in %zu bytes", file, cap);
    }
}

/* env.txt, read once: KEY=VALUE lines, values kept as read (they may hold any character). */
#define MAX_ENV_ENTRIES 128
static struct {
    char *key;
    char *value;
} env_entries[MAX_ENV_ENTRIES];
static size_t env_count;
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

static void read_env_txt(void)
{
    char path[4096];
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    FILE *f;
    testenv_path(path, sizeof path, "env.txt");
    f = fopen(path, "r");
    if (f == NULL) {
        test_fail(__FILE__, __LINE__, "cannot open %s", path);
    }
    while ((len = getline(&line, &line_cap, f)) != -1) {
        char *eq;
        if (len > 0 && line[len - 1] == '\n') {
            line[len - 1] = '\0';
        }
        eq = strchr(line, '=');
        if (eq == NULL) {
            continue;
        }
        if (env_count == MAX_ENV_ENTRIES) {
            test_fail(__FILE__, __LINE__, "%s has more than %d entries", path, MAX_ENV_ENTRIES);
        }
        *eq = '\0';
        env_entries[env_count].key = strdup(line);
        env_entries[env_count].value = strdup(eq + 1);
        if (env_entries[env_count].key == NULL || env_entries[env_count].value == NULL) {
            test_fail(__FILE__, __LINE__, "out of memory reading %s", path);
        }
        env_count++;
    }
    if (ferror(f)) {
        test_fail(__FILE__, __LINE__, "cannot read %s", path);
    }
    free(line);
    if (fclose(f) != 0) {
        test_fail(__FILE__, __LINE__, "cannot close %s", path);
    }
}

static void load_env_txt(void)
{
    if (pthread_once(&env_once, read_env_txt) != 0) {
        test_fail(__FILE__, __LINE__, "pthread_once failed");
    }
}

int testenv_entry(size_t i, const char **key, const char **value)
{
    load_env_txt();
    if (i >= env_count) {
        return 0;
    }
    *key = env_entries[i].key;
    *value = env_entries[i].value;
    return 1;
}

const char *testenv_value(const char *key)
{
    size_t i;
    load_env_txt();
    for (i = 0; i < env_count; i++) {
        if (strcmp(env_entries[i].key, key) == 0) {
            return env_entries[i].value;
        }
    }
    test_fail(__FILE__, __LINE__, "env.txt has no %s", key);
}

dtun_config *load_scenario(const char *file)
{
    char path[4096];
    dtun_config *config = NULL;
    testenv_path(path, sizeof path, file);
    CHECK_OK(dtun_config_from_file(path, &config));
    CHECK(config != NULL);
    return config;
}

dtun_conn *open_scenario(const char *file)
{
    dtun_config *config = load_scenario(file);
    dtun_conn *conn = NULL;
    CHECK_OK(dtun_open(config, TEST_OPEN_TIMEOUT_MS, &conn));
    CHECK(conn != NULL);
    dtun_config_free(config);
    return conn;
}

void send_all(dtun_conn *conn, const void *buf, size_t len)
{
    size_t sent = (size_t)-1;
    CHECK_OK(dtun_send(conn, (const uint8_t *)buf, len, &sent, TEST_IO_TIMEOUT_MS));
    if (sent != len) {
        test_fail(__FILE__, __LINE__, "dtun_send returned DTUN_OK with %zu of %zu bytes sent",
                  sent, len);
    }
}

void recv_exact(dtun_conn *conn, void *buf, size_t len)
{
    uint8_t *p = (uint8_t *)buf;
    size_t done = 0;
    while (done < len) {
        size_t got = (size_t)-1;
        CHECK_OK(dtun_recv(conn, p + done, len - done, &got, TEST_IO_TIMEOUT_MS));
        if (got == 0 || got > len - done) {
            test_fail(__FILE__, __LINE__, "dtun_recv returned DTUN_OK with %zu bytes (asked %zu)",
                      got, len - done);
        }
        done += got;
    }
}

uint8_t pattern_byte(uint32_t seed, uint64_t i)
{
    /* A cheap mix of position and seed; not periodic over any power-of-two chunk size. */
    uint64_t x = ((i + 1) * 0x9E3779B97F4A7C15ULL) ^ (((uint64_t)seed << 32) | seed);
    x ^= x >> 29;
    return (uint8_t)(x ^ (x >> 17));
}

void echo_check(dtun_conn *conn, size_t len, uint32_t seed)
{
    uint8_t *out = (uint8_t *)malloc(len);
    uint8_t *back = (uint8_t *)malloc(len);
    size_t i;
    if (out == NULL || back == NULL) {
        test_fail(__FILE__, __LINE__, "out of memory for a %zu-byte echo", len);
    }
    for (i = 0; i < len; i++) {
        out[i] = pattern_byte(seed, i);
    }
    send_all(conn, out, len);
    recv_exact(conn, back, len);
    for (i = 0; i < len; i++) {
        if (back[i] != out[i]) {
            test_fail(__FILE__, __LINE__, "echo differs at byte %zu of %zu: sent 0x%02x, got 0x%02x",
                      i, len, out[i], back[i]);
        }
    }
    free(out);
    free(back);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

void framed_check(dtun_conn *conn, uint32_t seq, size_t payload_len)
{
    /* The framed collector (testenv/src/collector.rs): each message is a 4-byte big-endian
     * length counting the 6-byte header, version 4, a type byte and the payload; each is
     * acknowledged with a 14-byte frame of type 0xAC whose payload is the message's sequence
     * number on the connection (from 1) and the payload length it received. */
    static const uint8_t ack_head[6] = {0, 0, 0, 14, 4, 0xAC};
    uint8_t *frame = (uint8_t *)malloc(6 + payload_len);
    uint8_t ack[14];
    size_t i;
    if (frame == NULL) {
        test_fail(__FILE__, __LINE__, "out of memory for a %zu-byte frame", payload_len);
    }
    put_be32(frame, (uint32_t)(6 + payload_len));
    frame[4] = 4;
    frame[5] = 1;
    for (i = 0; i < payload_len; i++) {
        frame[6 + i] = pattern_byte(seq, i);
    }
    send_all(conn, frame, 6 + payload_len);
    free(frame);
    recv_exact(conn, ack, sizeof ack);
    if (memcmp(ack, ack_head, sizeof ack_head) != 0) {
        test_fail(__FILE__, __LINE__, "not an acknowledgement frame: %02x %02x %02x %02x %02x %02x",
                  ack[0], ack[1], ack[2], ack[3], ack[4], ack[5]);
    }
    if (get_be32(ack + 6) != seq || get_be32(ack + 10) != payload_len) {
        test_fail(__FILE__, __LINE__, "ack for message %u of %u bytes, expected %u of %zu",
                  get_be32(ack + 6), get_be32(ack + 10), seq, payload_len);
    }
}

void base64_encode(const void *data, size_t len, char *out, size_t cap)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const uint8_t *in = (const uint8_t *)data;
    size_t need = (len + 2) / 3 * 4 + 1;
    size_t i;
    size_t o = 0;
    if (cap < need) {
        test_fail(__FILE__, __LINE__, "base64 of %zu bytes needs %zu bytes, have %zu", len, need,
                  cap);
    }
    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (len - i == 2) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8);
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
}

/* ---- secrets: nothing the library says may contain one ---------------------------------- */

/* The rule of leak_in() in tests/support/mod.rs: a text leaks a secret when it holds the whole
 * secret or any run of SECRET_WINDOW of its characters (a truncated or partly escaped secret is
 * still a leak); a secret of SECRET_WINDOW characters or fewer is matched whole. Characters,
 * as in Rust, are Unicode scalar values: the windows of a UTF-8 secret start and end on
 * character boundaries. Each secret is cut into its pieces once, whole secret first, then its
 * windows from left to right, so that secrets_find() names what leak_in() names. */
#define SECRET_WINDOW 8

static size_t n_secrets;
static char **pieces;
static size_t n_pieces;
static size_t cap_pieces;

static void add_piece(const char *text, size_t len)
{
    char *piece;
    if (n_pieces == cap_pieces) {
        size_t cap = cap_pieces == 0 ? 64 : cap_pieces * 2;
        char **grown = (char **)realloc(pieces, cap * sizeof *pieces);
        if (grown == NULL) {
            test_fail(__FILE__, __LINE__, "out of memory");
        }
        pieces = grown;
        cap_pieces = cap;
    }
    piece = (char *)malloc(len + 1);
    if (piece == NULL) {
        test_fail(__FILE__, __LINE__, "out of memory");
    }
    memcpy(piece, text, len);
    piece[len] = '\0';
    pieces[n_pieces++] = piece;
}

/* Whether byte b starts a UTF-8 character (it is not a continuation byte 10xxxxxx). */
static int starts_char(unsigned char b)
{
    return (b & 0xC0) != 0x80;
}

static void add_secret(const char *text)
{
    size_t len = strlen(text);
    size_t starts[1024];
    size_t chars = 0;
    size_t i;
    for (i = 0; i < len; i++) {
        if (starts_char((unsigned char)text[i])) {
            if (chars == sizeof starts / sizeof starts[0]) {
                test_fail(__FILE__, __LINE__, "a secret of more than %zu characters", chars);
            }
            starts[chars++] = i;
        }
    }
    add_piece(text, len);
    if (chars > SECRET_WINDOW) {
        for (i = 0; i + SECRET_WINDOW <= chars; i++) {
            size_t end = i + SECRET_WINDOW < chars ? starts[i + SECRET_WINDOW] : len;
            add_piece(text + starts[i], end - starts[i]);
        }
    }
    n_secrets++;

    /* The scanner itself: the secret inside a text is found, and so is its last window
     * alone, cut from the rest (a whole-string match would miss it). */
    {
        char probe[1200];
        int n = snprintf(probe, sizeof probe, "before %s after", text);
        CHECK(n > 0 && (size_t)n < sizeof probe);
        CHECK(secrets_find(probe) != NULL);
        if (chars > SECRET_WINDOW) {
            const char *last = text + starts[chars - SECRET_WINDOW];
            n = snprintf(probe, sizeof probe, "cut>%s<cut", last);
            CHECK(n > 0 && (size_t)n < sizeof probe);
            CHECK(secrets_find(probe) != NULL);
        }
    }
}

int str_ends_with(const char *s, const char *suffix)
{
    size_t ls = strlen(s);
    size_t lx = strlen(suffix);
    return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

/* Every *_PASSWORD of env.txt, and the Base64 of every *_USER ":" *_PASSWORD pair (which
 * covers each real Proxy-Authorization value, and a few that cannot occur). */
void secrets_collect(void)
{
    const char *key;
    const char *password;
    size_t i;
    size_t j;
    for (i = 0; testenv_entry(i, &key, &password); i++) {
        const char *user;
        const char *user_key;
        if (!str_ends_with(key, "_PASSWORD")) {
            continue;
        }
        add_secret(password);
        for (j = 0; testenv_entry(j, &user_key, &user); j++) {
            char pair[512];
            char encoded[1024];
            int n;
            if (!str_ends_with(user_key, "_USER")) {
                continue;
            }
            n = snprintf(pair, sizeof pair, "%s:%s", user, password);
            CHECK(n > 0 && (size_t)n < sizeof pair);
            base64_encode(pair, (size_t)n, encoded, sizeof encoded);
            add_secret(encoded);
        }
    }
    CHECK(n_secrets > 0);
}

void secrets_add(const char *text)
{
    add_secret(text);
}

const char *secrets_find(const char *text)
{
    size_t i;
    for (i = 0; i < n_pieces; i++) {
        if (strstr(text, pieces[i]) != NULL) {
            return pieces[i];
        }
    }
    return NULL;
}

size_t secrets_count(void)
{
    return n_secrets;
}

void secrets_free(void)
{
    size_t i;
    for (i = 0; i < n_pieces; i++) {
        free(pieces[i]);
    }
    free(pieces);
    pieces = NULL;
    n_pieces = 0;
    cap_pieces = 0;
    n_secrets = 0;
}

long current_tid(void)
{
    return (long)syscall(SYS_gettid);
}

/* The number of the system call thread tid is blocked in (first field of
 * /proc/self/task/TID/syscall), or -1 when it is running or cannot be read. */
static long blocked_syscall(long tid)
{
    char path[64];
    char line[256];
    long nr = -1;
    FILE *f;
    (void)snprintf(path, sizeof path, "/proc/self/task/%ld/syscall", tid);
    f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    if (fgets(line, sizeof line, f) != NULL && strncmp(line, "running", 7) != 0) {
        nr = strtol(line, NULL, 10);
    }
    (void)fclose(f);
    return nr;
}

static int is_wait_syscall(long nr, int futex_too)
{
#ifdef SYS_epoll_wait
    if (nr == SYS_epoll_wait) {
        return 1;
    }
#endif
#ifdef SYS_epoll_pwait2
    if (nr == SYS_epoll_pwait2) {
        return 1;
    }
#endif
    return nr == SYS_epoll_pwait || (futex_too && nr == SYS_futex);
}

void wait_until_blocked(long tid, int futex_too)
{
    int polls;
    /* A bounded poll of a condition (30 s), not a guess of how long blocking takes. */
    for (polls = 0; polls < 30000; polls++) {
        struct timespec ms = {0, 1000000};
        if (is_wait_syscall(blocked_syscall(tid), futex_too)) {
            return;
        }
        (void)nanosleep(&ms, NULL);
    }
    test_fail(__FILE__, __LINE__, "thread %ld never blocked waiting (epoll_wait%s)", tid,
              futex_too ? " or futex" : "");
}
