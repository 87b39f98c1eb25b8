// include/dragent_tunnel.hpp: the owners and dtun::result, without a network (the tunnel
// itself is exercised by the agent_client_cpp example through squid).

#include "dragent_tunnel.hpp"

#include <cstdio>
#include <cstring>
#include <string_view>
#include <type_traits>

static_assert(!std::is_copy_constructible_v<dtun::config>, "owners are move-only");
static_assert(!std::is_copy_constructible_v<dtun::connection>, "owners are move-only");
static_assert(!std::is_copy_constructible_v<dtun::report>, "owners are move-only");
static_assert(std::is_nothrow_move_constructible_v<dtun::config>, "moves do not throw");
static_assert(std::is_nothrow_move_constructible_v<dtun::connection>, "moves do not throw");
static_assert(std::is_nothrow_move_assignable_v<dtun::report>, "moves do not throw");
static_assert(sizeof(dtun::connection) == sizeof(void *), "an owner is one pointer");

static int failures = 0;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            std::fprintf(stderr, "FAIL: %s:%d: %s\n", __FILE__, __LINE__, #cond);      \
            failures++;                                                                \
        }                                                                              \
    } while (0)

static bool contains(std::string_view text, std::string_view part)
{
    return text.find(part) != std::string_view::npos;
}

int main()
{
    CHECK(dtun::version() == dtun_version());
    CHECK(!dtun::version().empty());

    // A config from YAML text that is not NUL-terminated: the view's length counts.
    const char yaml[] = "collector: collector.example\ncollector_port: 7443\nGARBAGE";
    auto [cfg, loaded] = dtun::config::from_yaml(std::string_view(yaml, std::strlen(yaml) - 7));
    CHECK(loaded.ok() && cfg);
    CHECK(loaded.message().empty());

    // A bad value: the status, the library's words naming the key, and describe().
    dtun::result bad = cfg.set("collector_port", "70000");
    CHECK(bad.status() == DTUN_ERR_CONFIG);
    CHECK(!bad);
    CHECK(contains(bad.message(), "collector_port"));
    CHECK(contains(bad.describe(), "DTUN_ERR_CONFIG: "));
    CHECK(std::strcmp(bad.name(), "DTUN_ERR_CONFIG") == 0);
    // An unknown key; string_view inputs need no NUL.
    std::string_view keys = "http_proxy.proxy_portXX";
    CHECK(cfg.set(keys.substr(0, 21), "3128").ok());
    CHECK(cfg.set(keys, "3128").status() == DTUN_ERR_INVALID_ARGUMENT);

    // A YAML syntax error keeps its line and column in the message.
    auto [broken, failed] = dtun::config::from_yaml("collector: [unclosed\n");
    CHECK(failed.status() == DTUN_ERR_CONFIG && !broken);
    CHECK(!failed.message().empty());

    // Moving empties the source; a member called on an empty owner is refused, not a crash.
    dtun::config moved = std::move(cfg);
    CHECK(moved && !cfg);
    CHECK(cfg.set("collector_port", "1").status() == DTUN_ERR_INVALID_ARGUMENT);
    dtun::connection none;
    char buf[4];
    auto got = none.recv(buf, sizeof buf, 0);
    CHECK(got.status.status() == DTUN_ERR_INVALID_ARGUMENT && got.value == 0);
    CHECK(none.send("x", 0).status.status() == DTUN_ERR_INVALID_ARGUMENT);
    CHECK(none.shutdown().status() == DTUN_ERR_INVALID_ARGUMENT);
    CHECK(!none.report());

    // A failed open (nothing listens on port 1 of localhost): the result and the report.
    CHECK(moved.set("collector", "127.0.0.1").ok());
    CHECK(moved.set("collector_port", "1").ok());
    auto [conn, opened] = dtun::connection::open(moved, 5000);
    CHECK(!opened && !conn);
    CHECK(opened.status() == DTUN_ERR_CONNECT);
    auto last = dtun::report::last_open();
    CHECK(last && last.value);
    CHECK(!last.value.text().empty());
    CHECK(last.value.get("route").has_value());
    CHECK(!last.value.get("no.such.key").has_value());

    if (failures != 0) {
        std::fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    std::printf("dragent_tunnel.hpp: all checks passed\n");
    return 0;
}
