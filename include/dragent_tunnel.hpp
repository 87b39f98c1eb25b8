// dragent_tunnel.hpp: C++17 owners for the dragent-tunnel C API (include/dragent_tunnel.h).
//
// Header-only: link libdragent_tunnel as for C (pkg-config dragent-tunnel, or CMake's
// DragentTunnel::dragent_tunnel). Written by hand, not generated; it adds no behaviour, only
// ownership and C++ types over the C functions, whose documentation (blocking, timeouts,
// threads) applies unchanged.
//
//   #include <dragent_tunnel.hpp>
//
//   auto [cfg, loaded] = dtun::config::from_file("/opt/draios/etc/dragent.yaml");
//   if (!loaded) { std::fprintf(stderr, "%s\n", loaded.describe().c_str()); return 1; }
//   auto [conn, opened] = dtun::connection::open(cfg, 10000);
//   if (!opened) { std::fprintf(stderr, "%s\n", opened.describe().c_str()); return 1; }
//   auto sent = conn.send(bytes, size, 5000);          // sent.value: bytes accepted
//   auto got = conn.recv(buffer, sizeof buffer, 5000);  // got.value: bytes received
//   // conn closes (close_notify) and cfg frees when they go out of scope.
//
// Rules:
// - No exceptions are required or thrown by this header: every failure is a dtun::result
//   (the status and a copy of dtun_last_error(), taken at once, so it stays valid). It builds
//   with -fno-exceptions. It copies std::string_view inputs into std::string to add the NUL
//   the C API needs; like all of the standard library, that allocation aborts the program
//   under -fno-exceptions when memory runs out.
// - Owners are move-only std::unique_ptr with deleters: dtun::config (dtun_config_free),
//   dtun::connection (dtun_close), dtun::report (dtun_report_free). A moved-from owner is
//   empty; calling a member on an empty owner passes NULL to the C function, which answers
//   DTUN_ERR_INVALID_ARGUMENT (never a crash).
// - Thread rules are the C API's: a config may be shared by threads (open is const); one
//   thread may send while another receives; shutdown() may be called from any thread; the
//   destructor (dtun_close) must not race with send or recv, as with POSIX close.
// - C++17, no other dependency. Compiled in CI with -Wall -Wextra -Werror -pedantic by g++ and
//   clang++.

#ifndef DRAGENT_TUNNEL_HPP
#define DRAGENT_TUNNEL_HPP

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "dragent_tunnel.h"

namespace dtun {

// The outcome of a call: a status and, on failure, the library's message for it.
class result {
public:
    // DTUN_OK, no message.
    result() noexcept = default;
    // `status` with `message` (copied). DTUN_OK, DTUN_TIMED_OUT, DTUN_CLOSED and
    // DTUN_SHUT_DOWN are not failures of the call.
    result(dtun_status status, std::string message) : status_(status), message_(std::move(message)) {}

    // The status of the last dtun_ call of this thread, with dtun_last_error() copied now.
    static result from_last_call(dtun_status status)
    {
        if (status == DTUN_OK) {
            return result();
        }
        const char *message = dtun_last_error();
        return result(status, message != nullptr ? message : "");
    }

    dtun_status status() const noexcept { return status_; }
    bool ok() const noexcept { return status_ == DTUN_OK; }
    explicit operator bool() const noexcept { return ok(); }
    // "DTUN_ERR_PROXY_AUTH" (static storage).
    const char *name() const noexcept { return dtun_status_name(status_); }
    // The library's words ("" on success, and for statuses that carry none).
    const std::string &message() const noexcept { return message_; }
    // "DTUN_ERR_PROXY_AUTH: proxy localhost:3128 answered HTTP/1.1 407 ...", or just the name.
    std::string describe() const
    {
        std::string text = name();
        if (!message_.empty()) {
            text += ": ";
            text += message_;
        }
        return text;
    }

private:
    dtun_status status_ = DTUN_OK;
    std::string message_;
};

// A value with the result of the call that made it (C++17 structured bindings:
// `auto [value, status] = ...`). `value` is empty (or 0) unless the call says otherwise.
template <class T>
struct outcome {
    T value;
    dtun::result status;
    explicit operator bool() const noexcept { return status.ok(); }
};

namespace detail {
struct config_deleter {
    void operator()(dtun_config *p) const noexcept { dtun_config_free(p); }
};
struct conn_deleter {
    void operator()(dtun_conn *p) const noexcept { dtun_close(p); }
};
struct report_deleter {
    void operator()(dtun_report *p) const noexcept { dtun_report_free(p); }
};
}  // namespace detail

using config_ptr = std::unique_ptr<dtun_config, detail::config_deleter>;
using conn_ptr = std::unique_ptr<dtun_conn, detail::conn_deleter>;
using report_ptr = std::unique_ptr<dtun_report, detail::report_deleter>;

// The library's version, "0.1.0" (dtun_version()).
inline std::string_view version() noexcept { return dtun_version(); }

// The report of an open (dtun_report): keys and a text, valid as long as this owner lives.
class report {
public:
    report() noexcept = default;
    explicit report(report_ptr p) noexcept : p_(std::move(p)) {}

    // The value of `key` ("route", "time.total_ms", ...), or nothing when the report has no
    // such key. The view points into the report.
    std::optional<std::string_view> get(std::string_view key) const
    {
        const char *value = dtun_report_get(p_.get(), std::string(key).c_str());
        if (value == nullptr) {
            return std::nullopt;
        }
        return std::string_view(value);
    }
    // Every key, one "key: value" line each (dtun_report_text); "" for an empty owner.
    std::string_view text() const noexcept
    {
        const char *text = dtun_report_text(p_.get());
        return text != nullptr ? std::string_view(text) : std::string_view();
    }
    // The report of this thread's latest dtun::connection::open, failed or not.
    static outcome<report> last_open()
    {
        dtun_report *raw = nullptr;
        dtun_status status = dtun_last_open_report(&raw);
        return {report(report_ptr(raw)), result::from_last_call(status)};
    }

    const dtun_report *get() const noexcept { return p_.get(); }
    explicit operator bool() const noexcept { return p_ != nullptr; }

private:
    report_ptr p_;
};

// A configuration (dtun_config): defaults, a dragent.yaml file or YAML text, then keys.
class config {
public:
    config() noexcept = default;
    explicit config(config_ptr p) noexcept : p_(std::move(p)) {}

    // Every documented default (dtun_config_new).
    static outcome<config> defaults()
    {
        dtun_config *raw = nullptr;
        dtun_status status = dtun_config_new(&raw);
        return {config(config_ptr(raw)), result::from_last_call(status)};
    }
    // A dragent.yaml file (dtun_config_from_file); CA files are read now.
    static outcome<config> from_file(std::string_view path)
    {
        dtun_config *raw = nullptr;
        dtun_status status = dtun_config_from_file(std::string(path).c_str(), &raw);
        return {config(config_ptr(raw)), result::from_last_call(status)};
    }
    // dragent.yaml text (dtun_config_from_yaml); no NUL needed.
    static outcome<config> from_yaml(std::string_view yaml)
    {
        dtun_config *raw = nullptr;
        dtun_status status = dtun_config_from_yaml(yaml.data(), yaml.size(), &raw);
        return {config(config_ptr(raw)), result::from_last_call(status)};
    }
    // One dotted key ("http_proxy.proxy_port", "3128"); a failed set changes nothing.
    result set(std::string_view key, std::string_view value)
    {
        return result::from_last_call(
            dtun_config_set(p_.get(), std::string(key).c_str(), std::string(value).c_str()));
    }

    const dtun_config *get() const noexcept { return p_.get(); }
    dtun_config *get() noexcept { return p_.get(); }
    explicit operator bool() const noexcept { return p_ != nullptr; }

private:
    config_ptr p_;
};

// An open tunnel (dtun_conn). The destructor closes it (close_notify, bounded in time).
class connection {
public:
    connection() noexcept = default;
    explicit connection(conn_ptr p) noexcept : p_(std::move(p)) {}

    // Opens the tunnel `cfg` describes within `timeout_ms` (dtun_open). The connection does
    // not need `cfg` afterwards.
    static outcome<connection> open(const config &cfg, std::int32_t timeout_ms)
    {
        dtun_conn *raw = nullptr;
        dtun_status status = dtun_open(cfg.get(), timeout_ms, &raw);
        return {connection(conn_ptr(raw)), result::from_last_call(status)};
    }

    // Sends `len` bytes (dtun_send): all of them unless the timeout passes (DTUN_TIMED_OUT)
    // or an error occurs; `value` says how many were accepted in every case.
    outcome<std::size_t> send(const void *data, std::size_t len, std::int32_t timeout_ms)
    {
        std::size_t sent = 0;
        dtun_status status =
            dtun_send(p_.get(), static_cast<const std::uint8_t *>(data), len, &sent, timeout_ms);
        return {sent, result::from_last_call(status)};
    }
    outcome<std::size_t> send(std::string_view bytes, std::int32_t timeout_ms)
    {
        return send(bytes.data(), bytes.size(), timeout_ms);
    }
    // Receives up to `cap` bytes (dtun_recv), as soon as at least one is there. DTUN_CLOSED:
    // the collector ended the stream; DTUN_TIMED_OUT: nothing came, still usable.
    outcome<std::size_t> recv(void *buffer, std::size_t cap, std::int32_t timeout_ms)
    {
        std::size_t received = 0;
        dtun_status status = dtun_recv(p_.get(), static_cast<std::uint8_t *>(buffer), cap,
                                       &received, timeout_ms);
        return {received, result::from_last_call(status)};
    }
    // Wakes send and recv blocked on this connection in any thread (dtun_conn_shutdown); they
    // and later calls return DTUN_SHUT_DOWN. The connection still needs closing.
    result shutdown() { return result::from_last_call(dtun_conn_shutdown(p_.get())); }
    // The report of the open that made this connection (dtun_conn_report).
    outcome<dtun::report> report() const
    {
        dtun_report *raw = nullptr;
        dtun_status status = dtun_conn_report(p_.get(), &raw);
        return {dtun::report(report_ptr(raw)), result::from_last_call(status)};
    }
    // Closes now rather than at destruction (dtun_close); the owner is then empty.
    void close() noexcept { p_.reset(); }

    dtun_conn *get() const noexcept { return p_.get(); }
    explicit operator bool() const noexcept { return p_ != nullptr; }

private:
    conn_ptr p_;
};

}  // namespace dtun

#endif  // DRAGENT_TUNNEL_HPP
