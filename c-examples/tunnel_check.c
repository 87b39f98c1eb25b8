/*
 * tunnel_check: says whether the tunnel a dragent.yaml describes opens, by which route, and
 * when it does not, why and what to change.
 *
 *   tunnel_check DRAGENT_YAML
 *
 * It loads the file with the library (so it applies exactly the agent's rules), opens the
 * tunnel, prints the library's report of the attempt (route, each stage with its time, TLS
 * version and certificate of each hop, the proxy's answer) and closes the tunnel again; it
 * sends nothing to the collector. The advice after a failure is the library's own hint for
 * that failure, or else the one this program keeps for the status. It never prints the proxy
 * password: it prints only what the library says, and the library never says it.
 *
 * Exit status: 0 when the tunnel opens, 1 when it does not (or the file is rejected), 2 on a
 * usage error.
 *
 * Written in the common subset of C11 and C++17 so that it also compiles as C++.
 */

#include <stdio.h>
#include <string.h>

#include "dragent_tunnel.h"

/* One deadline for the whole open: long enough for a slow proxy, short enough to report a
 * proxy that never answers. */
#define OPEN_TIMEOUT_MS 15000

/* What to change, for each status an open or a configuration load can end with. */
static const char *hint(dtun_status status)
{
    switch (status) {
    case DTUN_OK:
        return "nothing";
    case DTUN_TIMED_OUT:
    case DTUN_CLOSED:
    case DTUN_SHUT_DOWN:
    case DTUN_ERR_IO:
        return "the connection broke after it opened: check the network path and the proxy's "
               "idle timeout, then run the check again";
    case DTUN_ERR_INVALID_ARGUMENT:
        return "this is a bug in the calling program (a NULL pointer or a bad handle), not in "
               "the configuration";
    case DTUN_ERR_CONFIG:
        return "fix the key named in the message (a typo in a value, a port out of 1..65535, "
               "http_proxy.ssl: true with ssl: false, or a ca_certificate file that is missing "
               "or not PEM; relative CA paths are resolved against root_dir)";
    case DTUN_ERR_RESOLVE:
        return "check the host name of the first hop (http_proxy.proxy_host when a proxy is "
               "set, else collector) and this machine's DNS configuration";
    case DTUN_ERR_CONNECT:
        return "check the host and port of the first hop (http_proxy.proxy_host/proxy_port, "
               "else collector/collector_port), that the proxy or collector is running, and "
               "that no firewall rejects the connection";
    case DTUN_ERR_TIMEOUT:
        return "the stage named in the message did not finish in time: check for a firewall "
               "that drops packets, that http_proxy.ssl matches the proxy port (a TLS port "
               "waits for a handshake a plain client never sends), and the proxy's logs";
    case DTUN_ERR_PROXY_TLS:
        return "the proxy port does not speak TLS: set http_proxy.ssl: false for a plain proxy "
               "port, or point http_proxy.proxy_port at the proxy's TLS (https_port) port";
    case DTUN_ERR_PROXY_CERT:
        return "set http_proxy.ca_certificate to the CA that signed the proxy's certificate, "
               "make http_proxy.proxy_host match a name on that certificate, or (last resort) "
               "set http_proxy.ssl_verify_certificate: false";
    case DTUN_ERR_PROXY_AUTH:
        return "check http_proxy.proxy_user and http_proxy.proxy_password, and that "
               "http_proxy.proxy_auth names a scheme the proxy offers (basic, digest, or any)";
    case DTUN_ERR_PROXY_REFUSED:
        return "the proxy's rules refuse this destination: ask its administrator to allow "
               "CONNECT to collector:collector_port (squid: the SSL_ports and http_access "
               "rules), or check collector and collector_port";
    case DTUN_ERR_PROXY_PROTOCOL:
        return "the proxy port did not answer like an HTTP proxy: check "
               "http_proxy.proxy_port, and set http_proxy.ssl: true if it is a TLS port";
    case DTUN_ERR_COLLECTOR_TLS:
        return "the collector did not complete a TLS handshake: check collector_port, and set "
               "ssl: false only if the collector really speaks plain TCP";
    case DTUN_ERR_COLLECTOR_CERT:
        return "set ca_certificate to the CA that signed the collector's certificate, make "
               "collector match a name on that certificate, or (last resort) set "
               "ssl_verify_certificate: false";
    case DTUN_ERR_INTERNAL:
        return "this is a bug in dragent-tunnel: report it with this output";
    }
    return "no hint for this status (a newer library than this program)";
}

/* Prints the library's warnings (certificate verification switched off, no system CA
 * certificates): they matter to someone checking a configuration. Errors are left out: the
 * report says more about them. The library may call this from its own threads; printf locks
 * the stream, so lines do not interleave. */
static void on_log(void *userdata, dtun_log_level level, const char *message)
{
    (void)userdata;
    if (level == DTUN_LOG_WARN) {
        /* A log callback has no one to report a failed write to: the record is dropped. */
        (void)printf("warning: %s\n", message);
    }
}

/* Prints the diagnosis of a failed step and returns the exit status for it. `hint_text` is
 * the library's advice for this very failure, or NULL to use the one for the status. */
static int report_failure(const char *step, dtun_status status, const char *message,
                          const char *hint_text)
{
    printf("FAILED: %s\n", step);
    printf("  status: %s (%d)\n", dtun_status_name(status), (int)status);
    printf("  why:    %s\n", message[0] != '\0' ? message : "(no message)");
    printf("  change: %s\n",
           hint_text != NULL && hint_text[0] != '\0' ? hint_text : hint(status));
    return 1;
}

/* The name the program is installed under: tunnel_check as an example, dtun-check in the
 * dragent-tunnel-tools package (which compiles it with -DPROGRAM_NAME="dtun-check"). */
#ifndef PROGRAM_NAME
#define PROGRAM_NAME "tunnel_check"
#endif

/* The --help text. It is also the man page: help2man turns it into dtun-check(1). */
static void print_help(void)
{
    printf("Usage: %s DRAGENT_YAML\n"
           "Says whether the tunnel to the collector that a dragent.yaml describes opens, by which\n"
           "route, and when it does not, why and which key to change.\n"
           "\n"
           "It loads the file with libdragent_tunnel (the agent's own rules), opens the tunnel\n"
           "(directly, or through the HTTP CONNECT proxy of http_proxy), prints the report of\n"
           "the attempt stage by stage (resolve, tcp connect, tls to proxy, proxy connect, tls\n"
           "to collector: the time, TLS version and certificate of each hop, the proxy's\n"
           "answer) and closes the tunnel again. It sends nothing to the collector, and never\n"
           "prints the proxy password.\n"
           "\n"
           "Options:\n"
           "  --help     print this help and exit\n"
           "  --version  print the version of the program and of the library and exit\n"
           "\n"
           "Exit status:\n"
           "  0  the tunnel opens\n"
           "  1  the tunnel does not open, or the file is rejected\n"
           "  2  usage error\n"
           "\n"
           "Examples:\n"
           "  %s /opt/draios/etc/dragent.yaml\n",
           PROGRAM_NAME, PROGRAM_NAME);
}

int main(int argc, char **argv)
{
    dtun_config *config = NULL;
    dtun_conn *conn = NULL;
    dtun_report *report = NULL;
    dtun_status status;
    /* dtun_last_error() lasts until this thread's next dtun_ call: keep a copy. */
    char message[1024];
    int result;

    if (argc == 2 && strcmp(argv[1], "--help") == 0) {
        print_help();
        return fflush(stdout) == 0 ? 0 : 1;
    }
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("%s (dragent-tunnel) %s\n", PROGRAM_NAME, dtun_version());
        return fflush(stdout) == 0 ? 0 : 1;
    }
    if (argc != 2 || (argv[1][0] == '-' && argv[1][1] == '-')) {
        fprintf(stderr, "usage: %s DRAGENT_YAML (%s --help for more)\n", PROGRAM_NAME,
                PROGRAM_NAME);
        return 2;
    }

    printf("%s: dragent-tunnel %s, checking %s\n", PROGRAM_NAME, dtun_version(), argv[1]);
    status = dtun_config_from_file(argv[1], &config);
    if (status != DTUN_OK) {
        result = report_failure("the configuration was rejected", status, dtun_last_error(),
                                NULL);
        goto out;
    }
    printf("configuration: accepted\n");

    dtun_set_logger(on_log, NULL, DTUN_LOG_WARN);
    printf("opening the tunnel (at most %d ms)\n", OPEN_TIMEOUT_MS);
    status = dtun_open(config, OPEN_TIMEOUT_MS, &conn);
    /* snprintf truncates a longer message safely; a truncated diagnosis is still useful. */
    (void)snprintf(message, sizeof message, "%s", dtun_last_error());
    /* No record may arrive while the report is printed, nor after this program is done. */
    dtun_set_logger(NULL, NULL, DTUN_LOG_ERROR);
    dtun_config_free(config);

    /* What the attempt did, stage by stage: the route, each stage's time and outcome (TLS
     * version and certificate of each hop, the proxy's answer), and advice after a failure. */
    if (dtun_last_open_report(&report) == DTUN_OK) {
        const char *text = dtun_report_text(report);
        const char *scheme = dtun_report_get(report, "proxy.auth_scheme");
        const char *rounds = dtun_report_get(report, "proxy.auth_rounds");
        printf("\n%s\n", text != NULL ? text : "(no report text)");
        if (rounds != NULL) {
            /* Which proxy auth scheme answered the proxy (Basic, Digest) and how many
             * CONNECTs it took (1: no 407; 2: one challenge answered). */
            printf("proxy auth: %s, %s CONNECT%s\n",
                   scheme != NULL ? scheme : "no credentials sent", rounds,
                   strcmp(rounds, "1") == 0 ? "" : "s");
        }
    } else {
        printf("(no report of the attempt: %s)\n", dtun_last_error());
    }

    if (status != DTUN_OK) {
        result = report_failure("the tunnel did not open", status, message,
                                report != NULL ? dtun_report_get(report, "hint") : NULL);
        goto out;
    }
    dtun_close(conn);
    printf("OK: the tunnel opens\n");
    {
        const char *route = report != NULL ? dtun_report_get(report, "route") : NULL;
        printf("  route: %s\n", route != NULL ? route : "(the library did not report it)");
    }
    result = 0;

out:
    dtun_report_free(report);
    if (fflush(stdout) != 0) {
        return 1;
    }
    return result;
}
