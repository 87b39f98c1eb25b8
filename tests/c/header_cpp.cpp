// The public header in a C++17 translation unit: it must compile cleanly (extern "C", no C-only
// constructs) and its functions must link with C linkage.

#include "dragent_tunnel.h"

#include <cstdio>
#include <cstring>

// A C++ logger: a captureless lambda converts to the C function pointer type.
static const dtun_log_fn kLogger = [](void *userdata, dtun_log_level level, const char *message) {
    static_cast<void>(userdata);
    static_cast<void>(level);
    static_cast<void>(message);
};

int main()
{
    static_assert(DTUN_OK == 0 && DTUN_ERR_INTERNAL == 199, "status numbers are the contract");
    static_assert(DTUN_WAIT_FOREVER == -1, "DTUN_WAIT_FOREVER is -1");
    if (std::strcmp(dtun_status_name(DTUN_ERR_PROXY_AUTH), "DTUN_ERR_PROXY_AUTH") != 0) {
        std::fprintf(stderr, "FAIL: dtun_status_name from C++\n");
        return 1;
    }
    dtun_config *config = nullptr;
    if (dtun_config_new(&config) != DTUN_OK || config == nullptr) {
        std::fprintf(stderr, "FAIL: dtun_config_new from C++: %s\n", dtun_last_error());
        return 1;
    }
    if (dtun_config_set(config, "collector_port", "8443") != DTUN_OK) {
        std::fprintf(stderr, "FAIL: dtun_config_set from C++: %s\n", dtun_last_error());
        return 1;
    }
    dtun_config_free(config);
    dtun_set_logger(kLogger, nullptr, DTUN_LOG_INFO);
    dtun_set_logger(nullptr, nullptr, DTUN_LOG_INFO);
    std::printf("dragent-tunnel %s from C++\n", dtun_version());
    return 0;
}
