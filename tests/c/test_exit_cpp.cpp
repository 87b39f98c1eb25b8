// Process and thread exit from C++ (issue 10): a tunnel closed and its config freed from a
// static object's destructor, and from thread_local objects made before the tunnel, in the
// main thread and in a std::thread. ctest checks the exit status and that every destructor
// printed its line, so a destructor that aborts, hangs or never ran fails the test.

#include <cstdio>
#include <cstring>
#include <thread>

extern "C" {
#include "support.h"
}

namespace {

// Owns a tunnel and its config until it is destroyed; then uses the tunnel once more,
// closes it, frees the config, and says so.
class Holder {
  public:
    explicit Holder(const char *where) : where_(where) {}
    Holder(const Holder &) = delete;
    Holder &operator=(const Holder &) = delete;
    ~Holder()
    {
        if (conn_ == nullptr) {
            std::printf("%s: nothing to close\n", where_);
            return;
        }
        echo_check(conn_, 50000, 3);
        dtun_close(conn_);
        dtun_config_free(cfg_);
        CHECK(std::strcmp(dtun_last_error(), "") == 0);
        std::printf("%s: tunnel echoed, closed, config freed\n", where_);
        (void)std::fflush(stdout);
    }

    void open(const char *scenario)
    {
        cfg_ = load_scenario(scenario);
        CHECK_OK(dtun_open(cfg_, TEST_OPEN_TIMEOUT_MS, &conn_));
        echo_check(conn_, 1000, 2);
    }

  private:
    const char *where_;
    dtun_config *cfg_ = nullptr;
    dtun_conn *conn_ = nullptr;
};

Holder static_holder("static destructor");
thread_local Holder main_thread_local("main thread_local destructor");

} // namespace

int main()
{
    // The thread_local is made first (this touch), the library's own thread-locals after it:
    // at exit they are torn down before it.
    (void)&main_thread_local;
    {
        std::thread worker([] {
            thread_local Holder worker_local("worker thread_local destructor");
            (void)&worker_local;
            worker_local.open("proxy_tls.yaml");
        });
        worker.join();
    }
    main_thread_local.open("proxy_tls_auth.yaml");
    static_holder.open("direct_tls.yaml");
    std::printf("main returns\n");
    return 0;
}
