/*
 * The smallest real user of an installed dragent-tunnel: opens the tunnel a dragent.yaml
 * describes, sends a few bytes to the (echo) collector and checks that they come back.
 * scripts/c-tests.sh builds it three ways against an installed prefix: with pkg-config, with
 * find_package(DragentTunnel), and linked statically, and runs each build.
 *
 *   consumer DRAGENT_YAML
 */

#include <stdio.h>
#include <string.h>

#include <dragent_tunnel.h>

static int fail(const char *what, dtun_status status)
{
    const char *message = dtun_last_error();
    fprintf(stderr, "consumer: %s failed: %s: %s\n", what, dtun_status_name(status), message);
    return 1;
}

int main(int argc, char **argv)
{
    static const char ping[] = "ping from a consumer of the installed package";
    char back[sizeof ping];
    size_t done = 0;
    size_t n = 0;
    dtun_config *config = NULL;
    dtun_conn *conn = NULL;
    dtun_status status;
    int result = 1;

    if (argc != 2) {
        fprintf(stderr, "usage: consumer DRAGENT_YAML\n");
        return 2;
    }
    status = dtun_config_from_file(argv[1], &config);
    if (status != DTUN_OK) {
        return fail("loading the configuration", status);
    }
    status = dtun_open(config, 10000, &conn);
    if (status != DTUN_OK) {
        result = fail("opening the tunnel", status);
        dtun_config_free(config);
        return result;
    }
    dtun_config_free(config);

    status = dtun_send(conn, (const uint8_t *)ping, sizeof ping, &n, 10000);
    if (status != DTUN_OK) {
        result = fail("sending", status);
        goto out;
    }
    while (done < sizeof ping) {
        status = dtun_recv(conn, (uint8_t *)back + done, sizeof ping - done, &n, 10000);
        if (status != DTUN_OK) {
            result = fail("receiving", status);
            goto out;
        }
        done += n;
    }
    if (memcmp(back, ping, sizeof ping) != 0) {
        fprintf(stderr, "consumer: the echo differs from what was sent\n");
        goto out;
    }
    printf("consumer: dragent-tunnel %s echoed %zu bytes\n", dtun_version(), done);
    result = 0;
out:
    dtun_close(conn);
    return result;
}
