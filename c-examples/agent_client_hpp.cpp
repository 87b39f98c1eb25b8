// agent_client_hpp: agent_client.c written against the C++ header include/dragent_tunnel.hpp
// (owners instead of free calls, dtun::result instead of status plus dtun_last_error()).
// Same protocol, arguments, output and exit status as agent_client.c:
//
//   agent_client_hpp DRAGENT_YAML [COUNT]
//
// Each message is a 4-byte big-endian length that counts the 6-byte header too, a version
// byte (4), a message type byte, then the payload; each is answered by an acknowledgement
// (type 0xAC) carrying the message's sequence number and the payload length the collector
// received, both checked. Exit status: 0 when every message was acknowledged, 1 on a failure,
// 2 on a usage error. No exceptions: it builds with -fno-exceptions.

#include <array>
#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "dragent_tunnel.hpp"

namespace {

constexpr std::size_t kHeaderLen = 6;
constexpr std::uint8_t kVersion = 4;
constexpr std::uint8_t kTypeMetrics = 1;
constexpr std::uint8_t kTypeAck = 0xAC;
constexpr std::uint32_t kAckPayloadLen = 8;
constexpr std::uint32_t kMaxReplyPayload = 4096;
constexpr std::int32_t kOpenTimeoutMs = 15000;
constexpr std::int32_t kIoTimeoutMs = 15000;
constexpr long kDefaultCount = 5;
constexpr long kMaxCount = 1000000;

int fail(const char *what, const dtun::result &r)
{
    std::fprintf(stderr, "agent_client_hpp: %s failed: %s\n", what, r.describe().c_str());
    return 1;
}

void print_log(void *, dtun_log_level level, const char *message)
{
    static const char *const names[] = {"?", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"};
    const char *name = (level >= DTUN_LOG_ERROR && level <= DTUN_LOG_TRACE) ? names[level] : "?";
    static_cast<void>(std::fprintf(stderr, "  [dragent-tunnel %s] %s\n", name, message));
}

void put_be32(std::uint8_t *p, std::uint32_t v)
{
    p[0] = static_cast<std::uint8_t>(v >> 24);
    p[1] = static_cast<std::uint8_t>(v >> 16);
    p[2] = static_cast<std::uint8_t>(v >> 8);
    p[3] = static_cast<std::uint8_t>(v);
}

std::uint32_t get_be32(const std::uint8_t *p)
{
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
           std::uint32_t{p[3]};
}

// Receives exactly len bytes (recv returns whatever is available, like POSIX recv).
dtun::result recv_exact(dtun::connection &conn, std::uint8_t *buf, std::size_t len)
{
    std::size_t done = 0;
    while (done < len) {
        auto got = conn.recv(buf + done, len - done, kIoTimeoutMs);
        if (!got) {
            return got.status;
        }
        done += got.value;
    }
    return {};
}

int exchange(dtun::connection &conn, std::uint32_t seq)
{
    const std::string payload = "{\"message\": " + std::to_string(seq) + ", \"metrics\": {\"cpu\": " +
                                std::to_string(seq % 100) + ".5}}";
    const auto payload_len = static_cast<std::uint32_t>(payload.size());
    std::string frame(kHeaderLen, '\0');
    std::array<std::uint8_t, kHeaderLen> header{};
    put_be32(header.data(), static_cast<std::uint32_t>(kHeaderLen) + payload_len);
    header[4] = kVersion;
    header[5] = kTypeMetrics;
    frame.assign(reinterpret_cast<const char *>(header.data()), header.size());
    frame += payload;

    auto sent = conn.send(frame, kIoTimeoutMs);
    if (!sent) {
        return fail("send", sent.status);
    }
    if (sent.value != frame.size()) {
        std::fprintf(stderr, "agent_client_hpp: send accepted %zu of %zu bytes\n", sent.value,
                     frame.size());
        return 1;
    }
    std::printf("sent message #%" PRIu32 ": type %d, %" PRIu32 " payload bytes\n", seq,
                kTypeMetrics, payload_len);

    dtun::result r = recv_exact(conn, header.data(), header.size());
    if (r.status() == DTUN_CLOSED) {
        std::fprintf(stderr,
                     "agent_client_hpp: the collector closed the connection before replying to "
                     "message #%" PRIu32 "\n",
                     seq);
        return 1;
    }
    if (!r) {
        return fail("receive", r);
    }
    const std::uint32_t reply_len = get_be32(header.data());
    if (header[4] != kVersion || reply_len < kHeaderLen ||
        reply_len - kHeaderLen > kMaxReplyPayload) {
        std::fprintf(stderr,
                     "agent_client_hpp: malformed reply frame (length %" PRIu32 ", version %u)\n",
                     reply_len, unsigned{header[4]});
        return 1;
    }
    std::array<std::uint8_t, kMaxReplyPayload> reply{};
    r = recv_exact(conn, reply.data(), reply_len - kHeaderLen);
    if (!r) {
        return fail("receive", r);
    }
    if (header[5] != kTypeAck) {
        std::printf("reply: type %u, %" PRIu32 " payload bytes\n", unsigned{header[5]},
                    reply_len - static_cast<std::uint32_t>(kHeaderLen));
        return 0;
    }
    if (reply_len - kHeaderLen != kAckPayloadLen) {
        std::fprintf(stderr, "agent_client_hpp: acknowledgement with a %" PRIu32 "-byte payload\n",
                     reply_len - static_cast<std::uint32_t>(kHeaderLen));
        return 1;
    }
    std::printf("ack #%" PRIu32 ": the collector received %" PRIu32 " payload bytes\n",
                get_be32(reply.data()), get_be32(reply.data() + 4));
    if (get_be32(reply.data()) != seq || get_be32(reply.data() + 4) != payload_len) {
        std::fprintf(stderr, "agent_client_hpp: expected ack #%" PRIu32 " for %" PRIu32 " bytes\n",
                     seq, payload_len);
        return 1;
    }
    return 0;
}

long parse_count(const char *text)
{
    char *end = nullptr;
    errno = 0;
    const long value = std::strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < 1 || value > kMaxCount) {
        return 0;
    }
    return value;
}

int run(const char *path, long count)
{
    std::printf("loading %s\n", path);
    auto [cfg, loaded] = dtun::config::from_file(path);
    if (!loaded) {
        return fail("loading the configuration", loaded);
    }
    std::printf("opening the tunnel (at most %d ms)\n", static_cast<int>(kOpenTimeoutMs));
    auto [conn, opened] = dtun::connection::open(cfg, kOpenTimeoutMs);
    if (!opened) {
        return fail("opening the tunnel", opened);
    }
    {
        // The connection keeps what it needs: the configuration can go now.
        dtun::config done = std::move(cfg);
    }
    auto rep = conn.report();
    const auto route = rep.value.get("route");
    const auto total_ms = rep.value.get("time.total_ms");
    std::printf("tunnel open: %.*s in %.*s ms\n",
                static_cast<int>(route ? route->size() : 15), route ? route->data() : "(route unknown)",
                static_cast<int>(total_ms ? total_ms->size() : 1), total_ms ? total_ms->data() : "?");

    int result = 0;
    for (long i = 1; i <= count && result == 0; i++) {
        result = exchange(conn, static_cast<std::uint32_t>(i));
    }
    if (result == 0) {
        std::printf("all %ld messages acknowledged\n", count);
    }
    conn.close();
    std::printf("tunnel closed\n");
    return result;
}

}  // namespace

int main(int argc, char **argv)
{
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    long count = kDefaultCount;
    if (argc < 2 || argc > 3) {
        std::fprintf(stderr, "usage: agent_client_hpp DRAGENT_YAML [COUNT]\n");
        return 2;
    }
    if (argc == 3) {
        count = parse_count(argv[2]);
        if (count == 0) {
            std::fprintf(stderr, "agent_client_hpp: COUNT must be a number from 1 to %ld, not \"%s\"\n",
                         kMaxCount, argv[2]);
            return 2;
        }
    }
    std::printf("dragent-tunnel %.*s\n", static_cast<int>(dtun::version().size()),
                dtun::version().data());
    dtun_set_logger(print_log, nullptr, DTUN_LOG_DEBUG);
    const int result = run(argv[1], count);
    // Logging off before exit, so no library thread calls into a program being torn down.
    dtun_set_logger(nullptr, nullptr, DTUN_LOG_ERROR);
    if (std::fflush(stdout) != 0) {
        return 1;
    }
    return result;
}
