/*
 * agent_client: sends framed messages to a collector the way the agent does, through the
 * tunnel a dragent.yaml describes, and prints the collector's replies.
 *
 *   agent_client DRAGENT_YAML [COUNT]
 *   agent_client --reconnect MAX_FAILURES DRAGENT_YAML [COUNT]
 *
 * Each message is a 4-byte big-endian length that counts the 6-byte header too, a version
 * byte (4), a message type byte, then the payload. The program sends COUNT messages (default
 * 5), one at a time, and after each one reads one reply frame and prints it; a reply of type
 * 0xAC is an acknowledgement whose payload is the message's sequence number on the connection
 * and the payload length the collector received (both 4-byte big-endian), and is checked.
 *
 * With --reconnect, the program behaves as an agent does: a failed open, or a connection that
 * breaks, is retried after the delay dtun_backoff_next() gives (exponential with jitter for
 * network failures, the slow floor at once for a wrong configuration such as a wrong
 * password), the policy is reset once a connection carried a message, and the COUNT messages
 * are sent across as many connections as it takes. It gives up after MAX_FAILURES failures in
 * a row. Restart the proxy while it runs to see it wait, grow its delay, and carry on.
 *
 * Exit status: 0 when every message was acknowledged, 1 on a failure (the status name and
 * the library's message are printed), 2 on a usage error.
 *
 * Written in the common subset of C11 and C++17 so that it also compiles as C++.
 */

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#endif

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dragent_tunnel.h"

/* Header of every frame: length (4, big-endian, header included), version (1), type (1). */
#define FRAME_HEADER_LEN 6
#define FRAME_VERSION 4
/* Type of the messages this example sends; the collector ignores it, the agent uses many. */
#define MSG_TYPE_METRICS 1
/* Type and payload length of the collector's acknowledgements. */
#define ACK_TYPE 0xAC
#define ACK_PAYLOAD_LEN 8
/* A reply longer than this is not from a collector this example understands. */
#define MAX_REPLY_PAYLOAD 4096

/* One deadline for the whole open, and one per send or receive: generous for slow proxies,
 * short enough that a silent collector does not hang the program. */
#define OPEN_TIMEOUT_MS 15000
#define IO_TIMEOUT_MS 15000

/* The reconnect policy of --reconnect: short bounds, so that the example shows its growth in
 * seconds (an agent would use its own, such as 1000 and 60000). */
#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 2000

#define DEFAULT_COUNT 5
#define MAX_COUNT 1000000

/* Prints the failure of a library call with its status name and message; returns 1, the exit
 * status for failures, so callers can `return fail(...)`. */
/* The status of the last failure fail() printed, for the reconnect policy. */
static dtun_status last_failure = DTUN_OK;

static int fail(const char *what, dtun_status status)
{
    last_failure = status;
    /* Read the message first: it belongs to this thread's last dtun_ call. */
    const char *message = dtun_last_error();
    fprintf(stderr, "agent_client: %s failed: %s: %s\n", what, dtun_status_name(status),
            message[0] != '\0' ? message : "(no message)");
    return 1;
}

/* Prints the library's records (stage by stage progress of the open) on stderr, so stdout
 * keeps only this program's own lines. The library may call this from its own threads;
 * fprintf locks the stream, so lines do not interleave. */
static void print_log(void *userdata, dtun_log_level level, const char *message)
{
    static const char *const names[] = {"?", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"};
    const char *name = (level >= DTUN_LOG_ERROR && level <= DTUN_LOG_TRACE) ? names[level] : "?";
    (void)userdata;
    /* A log callback has no one to report a failed write to: the record is dropped. */
    (void)fprintf(stderr, "  [dragent-tunnel %s] %s\n", name, message);
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

/* Sends all of buf. dtun_send already loops until every byte is accepted; a DTUN_TIMED_OUT
 * with some bytes accepted means the collector stopped reading, which this example treats as a
 * failure rather than retrying forever. */
static dtun_status send_all(dtun_conn *conn, const uint8_t *buf, size_t len)
{
    size_t sent = 0;
    dtun_status status = dtun_send(conn, buf, len, &sent, IO_TIMEOUT_MS);
    if (status == DTUN_OK && sent != len) {
        /* The contract says DTUN_OK means all bytes; check it rather than trust it blindly. */
        fprintf(stderr, "agent_client: send accepted %zu of %zu bytes\n", sent, len);
        return DTUN_ERR_IO;
    }
    return status;
}

/* Receives exactly len bytes (dtun_recv returns whatever is available, like POSIX recv). */
static dtun_status recv_exact(dtun_conn *conn, uint8_t *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        size_t got = 0;
        dtun_status status = dtun_recv(conn, buf + done, len - done, &got, IO_TIMEOUT_MS);
        if (status != DTUN_OK) {
            return status;
        }
        done += got;
    }
    return DTUN_OK;
}

/* Prints "tunnel open" with the route the library took and how long the open took. */
static void print_route(const dtun_conn *conn)
{
    dtun_report *report = NULL;
    const char *route = NULL;
    const char *total_ms = NULL;
    if (dtun_conn_report(conn, &report) == DTUN_OK) {
        route = dtun_report_get(report, "route");
        total_ms = dtun_report_get(report, "time.total_ms");
    }
    printf("tunnel open: %s in %s ms\n", route != NULL ? route : "(route unknown)",
           total_ms != NULL ? total_ms : "?");
    dtun_report_free(report);
}

/* Parses COUNT: a decimal number from 1 to MAX_COUNT. Returns 0 when it is not one. */
static long parse_count(const char *text)
{
    char *end = NULL;
    long value;
    errno = 0;
    value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < 1 || value > MAX_COUNT) {
        return 0;
    }
    return value;
}

/* Sends message number seq (from 1) and reads and checks its reply. Returns the exit status. */
static int exchange(dtun_conn *conn, uint32_t seq)
{
    char payload[128];
    uint8_t frame[FRAME_HEADER_LEN + sizeof payload];
    uint8_t header[FRAME_HEADER_LEN];
    uint8_t reply[MAX_REPLY_PAYLOAD];
    uint32_t reply_len;
    uint32_t payload_len;
    dtun_status status;
    int n = snprintf(payload, sizeof payload,
                     "{\"message\": %" PRIu32 ", \"metrics\": {\"cpu\": %" PRIu32 ".5}}", seq,
                     seq % 100);
    if (n < 0 || (size_t)n >= sizeof payload) {
        fprintf(stderr, "agent_client: cannot format message %" PRIu32 "\n", seq);
        return 1;
    }
    payload_len = (uint32_t)n;
    put_be32(frame, (uint32_t)FRAME_HEADER_LEN + payload_len);
    frame[4] = FRAME_VERSION;
    frame[5] = MSG_TYPE_METRICS;
    memcpy(frame + FRAME_HEADER_LEN, payload, payload_len);

    status = send_all(conn, frame, FRAME_HEADER_LEN + payload_len);
    if (status != DTUN_OK) {
        return fail("send", status);
    }
    printf("sent message #%" PRIu32 ": type %d, %" PRIu32 " payload bytes\n", seq,
           MSG_TYPE_METRICS, payload_len);

    status = recv_exact(conn, header, sizeof header);
    if (status == DTUN_CLOSED) {
        fprintf(stderr, "agent_client: the collector closed the connection before replying to "
                        "message #%" PRIu32 "\n", seq);
        last_failure = DTUN_CLOSED;
        return 1;
    }
    if (status != DTUN_OK) {
        return fail("receive", status);
    }
    reply_len = get_be32(header);
    if (header[4] != FRAME_VERSION || reply_len < FRAME_HEADER_LEN ||
        reply_len - FRAME_HEADER_LEN > MAX_REPLY_PAYLOAD) {
        fprintf(stderr, "agent_client: malformed reply frame (length %" PRIu32 ", version %u)\n",
                reply_len, (unsigned)header[4]);
        return 1;
    }
    status = recv_exact(conn, reply, reply_len - FRAME_HEADER_LEN);
    if (status != DTUN_OK) {
        return fail("receive", status);
    }
    if (header[5] != ACK_TYPE) {
        printf("reply: type %u, %" PRIu32 " payload bytes\n", (unsigned)header[5],
               reply_len - FRAME_HEADER_LEN);
        return 0;
    }
    if (reply_len - FRAME_HEADER_LEN != ACK_PAYLOAD_LEN) {
        fprintf(stderr, "agent_client: acknowledgement with a %" PRIu32 "-byte payload\n",
                reply_len - FRAME_HEADER_LEN);
        return 1;
    }
    printf("ack #%" PRIu32 ": the collector received %" PRIu32 " payload bytes\n",
           get_be32(reply), get_be32(reply + 4));
    if (get_be32(reply) != seq || get_be32(reply + 4) != payload_len) {
        fprintf(stderr, "agent_client: expected ack #%" PRIu32 " for %" PRIu32 " bytes\n", seq,
                payload_len);
        return 1;
    }
    return 0;
}

static void sleep_ms(uint32_t ms)
{
    struct timespec t;
    t.tv_sec = (time_t)(ms / 1000);
    t.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

/* --reconnect: sends `count` messages across as many connections as it takes, waiting what
 * the backoff policy says after each failure; gives up after `max_failures` in a row. */
static int run_reconnecting(dtun_config *config, long count, long max_failures)
{
    dtun_backoff *backoff = NULL;
    long acked = 0;
    long failures = 0;
    dtun_status status = dtun_backoff_new(RECONNECT_MIN_MS, RECONNECT_MAX_MS, &backoff);
    if (status != DTUN_OK) {
        return fail("creating the reconnect policy", status);
    }
    while (acked < count) {
        dtun_conn *conn = NULL;
        uint32_t seq = 0;
        uint32_t delay;
        int broken = 0;
        printf("opening the tunnel (at most %d ms)\n", OPEN_TIMEOUT_MS);
        status = dtun_open(config, OPEN_TIMEOUT_MS, &conn);
        if (status != DTUN_OK) {
            (void)fail("opening the tunnel", status);
        } else {
            print_route(conn);
            while (acked < count && !broken) {
                if (exchange(conn, ++seq) != 0) {
                    broken = 1;
                } else {
                    acked++;
                    /* The connection stayed up and carried a message: start afresh. */
                    dtun_backoff_reset(backoff);
                    failures = 0;
                }
            }
            dtun_close(conn);
            printf("tunnel closed\n");
            if (!broken) {
                break;
            }
        }
        failures++;
        if (failures >= max_failures) {
            fprintf(stderr, "agent_client: giving up after %ld failures in a row\n", failures);
            dtun_backoff_free(backoff);
            return 1;
        }
        /* On this thread, right after the failure: a refusal's HTTP status (403 or 5xx) is
         * read from this thread's last open report. */
        delay = dtun_backoff_next(backoff, last_failure);
        printf("reconnecting after %s: waiting %" PRIu32 " ms (failure %ld of at most %ld)\n",
               dtun_status_name(last_failure), delay, failures, max_failures);
        sleep_ms(delay);
    }
    dtun_backoff_free(backoff);
    printf("all %ld messages acknowledged\n", count);
    return 0;
}

int main(int argc, char **argv)
{
    dtun_config *config = NULL;
    dtun_conn *conn = NULL;
    dtun_status status;
    long count = DEFAULT_COUNT;
    long max_failures = 0;
    long i;
    int result = 0;

    /* One line at a time, so our lines interleave in order with the library's log lines on
     * stderr when both go to a pipe. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && strcmp(argv[1], "--reconnect") == 0) {
        max_failures = argc >= 3 ? parse_count(argv[2]) : 0;
        if (max_failures == 0) {
            fprintf(stderr, "agent_client: --reconnect needs MAX_FAILURES, a number from 1 to "
                            "%d\n", MAX_COUNT);
            return 2;
        }
        argv += 2;
        argc -= 2;
    }
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: agent_client DRAGENT_YAML [COUNT]\n"
                        "       agent_client --reconnect MAX_FAILURES DRAGENT_YAML [COUNT]\n");
        return 2;
    }
    if (argc == 3) {
        count = parse_count(argv[2]);
        if (count == 0) {
            fprintf(stderr, "agent_client: COUNT must be a number from 1 to %d, not \"%s\"\n",
                    MAX_COUNT, argv[2]);
            return 2;
        }
    }

    printf("dragent-tunnel %s\n", dtun_version());
    dtun_set_logger(print_log, NULL, DTUN_LOG_DEBUG);

    printf("loading %s\n", argv[1]);
    status = dtun_config_from_file(argv[1], &config);
    if (status != DTUN_OK) {
        result = fail("loading the configuration", status);
        goto out;
    }

    if (max_failures > 0) {
        result = run_reconnecting(config, count, max_failures);
        dtun_config_free(config);
        goto out;
    }

    printf("opening the tunnel (at most %d ms)\n", OPEN_TIMEOUT_MS);
    status = dtun_open(config, OPEN_TIMEOUT_MS, &conn);
    if (status != DTUN_OK) {
        /* Report before any other dtun_ call: the message lasts until this thread's next one. */
        result = fail("opening the tunnel", status);
        dtun_config_free(config);
        goto out;
    }
    /* The connection keeps what it needs: the configuration can go now. */
    dtun_config_free(config);
    print_route(conn);

    for (i = 1; i <= count && result == 0; i++) {
        result = exchange(conn, (uint32_t)i);
    }
    if (result == 0) {
        printf("all %ld messages acknowledged\n", count);
    }
    dtun_close(conn);
    printf("tunnel closed\n");

out:
    /* Turn logging off before exit, so no library thread calls into a program being torn down. */
    dtun_set_logger(NULL, NULL, DTUN_LOG_ERROR);
    if (fflush(stdout) != 0) {
        return 1;
    }
    return result;
}
