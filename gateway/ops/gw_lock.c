#include "gw_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "tsr_fs.h"

int gw_datadir_lock(const char *data_dir, int *fd_out)
{
    char path[4200];
    TSR_GUARD(tsr_path_join(path, sizeof path, data_dir, "gateway.lock"));
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
    TSR_ENSURE(fd >= 0, TSR_E_IO, "lock file %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        if (strspn(pid, "0123456789") != strlen(pid)) pid[0] = '\0';
        close(fd);
        if (e == EWOULDBLOCK)
            return TSR_FAIL(TSR_E_EXISTS,
                            "data_dir %s is in use by another tessera-gateway%s%s%s (it holds "
                            "%s): stop that one first, or give this one its own data_dir",
                            data_dir, pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "", path);
        return TSR_FAIL(TSR_E_IO, "lock %s: %s", path, strerror(e));
    }
    char line[32];
    int len = snprintf(line, sizeof line, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)len, 0) != len) {
        int e = errno;
        close(fd);
        return TSR_FAIL(TSR_E_IO, "write %s: %s", path, strerror(e));
    }
    *fd_out = fd;
    return 0;
}

int gw_listen_probe(const char *host, uint16_t port)
{
    if (port == 0) return 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char service[8];
    snprintf(service, sizeof service, "%u", (unsigned)port);
    int gai = getaddrinfo(host, service, &hints, &res);
    TSR_ENSURE(gai == 0 && res != NULL, TSR_E_INPUT, "cannot resolve listen host %s: %s", host,
               gai_strerror(gai));
    int rc = 0;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = TSR_FAIL(TSR_E_IO, "socket: %s", strerror(errno));
    } else {
        int one = 1;
        /* SO_REUSEADDR only: TIME_WAIT leftovers of an earlier run are no
         * reason to refuse; a listener is. */
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
            int e = errno;
            if (e == EADDRINUSE)
                rc = TSR_FAIL(TSR_E_EXISTS,
                              "listen %s:%u: the port is already in use by another process "
                              "(another tessera-gateway?); a gateway never shares its port",
                              host, (unsigned)port);
            else
                rc = TSR_FAIL(TSR_E_IO, "bind %s:%u: %s", host, (unsigned)port, strerror(e));
        }
        close(fd);
    }
    freeaddrinfo(res);
    return rc;
}
