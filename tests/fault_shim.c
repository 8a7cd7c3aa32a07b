/*
 * Fault injection for tests/server.rs, preloaded into the real `cairn` binary
 * (LD_PRELOAD): it fails chosen calls the server makes for a new connection, which a
 * healthy machine cannot be made to fail on demand.
 *
 *   CAIRN_FAULT_NODELAY=N  the Nth setsockopt(TCP_NODELAY) fails with EINVAL;
 *   CAIRN_FAULT_WATCH=N    the socket of the Nth setsockopt(TCP_NODELAY) cannot be added
 *                          to an epoll set (ENOSPC, as past max_user_watches).
 *
 * Every other call goes to the C library unchanged.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>

static atomic_int nodelay_calls;
static atomic_int unwatchable_fd = -1;

static int chosen(const char *name, int call) {
    const char *value = getenv(name);
    return value != NULL && atoi(value) == call;
}

int setsockopt(int fd, int level, int name, const void *value, socklen_t length) {
    static int (*real)(int, int, int, const void *, socklen_t);
    if (real == NULL) {
        real = (int (*)(int, int, int, const void *, socklen_t))dlsym(RTLD_NEXT, "setsockopt");
    }
    if (level == IPPROTO_TCP && name == TCP_NODELAY) {
        int call = atomic_fetch_add(&nodelay_calls, 1) + 1;
        if (chosen("CAIRN_FAULT_NODELAY", call)) {
            errno = EINVAL;
            return -1;
        }
        if (chosen("CAIRN_FAULT_WATCH", call)) {
            atomic_store(&unwatchable_fd, fd);
        }
    }
    return real(fd, level, name, value, length);
}

int epoll_ctl(int epoll, int operation, int fd, struct epoll_event *event) {
    static int (*real)(int, int, int, struct epoll_event *);
    if (real == NULL) {
        real = (int (*)(int, int, int, struct epoll_event *))dlsym(RTLD_NEXT, "epoll_ctl");
    }
    int expected = fd;
    if (operation == EPOLL_CTL_ADD && atomic_compare_exchange_strong(&unwatchable_fd, &expected, -1)) {
        errno = ENOSPC;
        return -1;
    }
    return real(epoll, operation, fd, event);
}
