/* LD_PRELOAD shim of getaddrinfo for tests/network.rs (name -> address control without
 * /etc/hosts):
 *   DTUN_SHIM_HANG=name          getaddrinfo("name") sleeps 10 s, then fails (EAI_AGAIN)
 *   DTUN_SHIM_MAP=name=a1,a2,... getaddrinfo("name") returns these IPv4/IPv6 literals, in
 *                                this order, as SOCK_STREAM addresses
 * Every other name goes to the C library's getaddrinfo. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

/* One allocation per node, the address right behind it, as glibc's freeaddrinfo expects. */
static struct addrinfo *node_for(const char *literal, int port) {
    struct addrinfo *ai = calloc(1, sizeof(struct addrinfo) + sizeof(struct sockaddr_in6));
    if (ai == NULL) return NULL;
    struct sockaddr_in *v4 = (struct sockaddr_in *)(ai + 1);
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)(ai + 1);
    if (inet_pton(AF_INET, literal, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((unsigned short)port);
        ai->ai_family = AF_INET;
        ai->ai_addrlen = sizeof(struct sockaddr_in);
    } else if (inet_pton(AF_INET6, literal, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((unsigned short)port);
        ai->ai_family = AF_INET6;
        ai->ai_addrlen = sizeof(struct sockaddr_in6);
    } else {
        free(ai);
        return NULL;
    }
    ai->ai_socktype = SOCK_STREAM;
    ai->ai_protocol = IPPROTO_TCP;
    ai->ai_addr = (struct sockaddr *)(ai + 1);
    return ai;
}

static int mapped(const char *node, const char *service, struct addrinfo **res) {
    const char *map = getenv("DTUN_SHIM_MAP");
    size_t len = strlen(node);
    if (map == NULL || strncmp(map, node, len) != 0 || map[len] != '=') return 0;
    int port = service ? atoi(service) : 0;
    char list[1024];
    strncpy(list, map + len + 1, sizeof list - 1);
    list[sizeof list - 1] = '\0';
    struct addrinfo *head = NULL, **tail = &head;
    char *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        struct addrinfo *ai = node_for(tok, port);
        if (ai == NULL) continue;
        *tail = ai;
        tail = &ai->ai_next;
    }
    *res = head;
    return head != NULL;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res) {
    const char *hang = getenv("DTUN_SHIM_HANG");
    if (node != NULL && hang != NULL && strcmp(node, hang) == 0) {
        sleep(10);
        return EAI_AGAIN;
    }
    if (node != NULL && mapped(node, service, res)) return 0;
    gai_fn real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    if (real == NULL) return EAI_FAIL;
    return real(node, service, hints, res);
}
