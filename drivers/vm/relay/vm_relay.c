/* tessera-vm-relay: one guest connection to the gateway, for the vm driver's
 * `network: gateway` mode (docs/drivers.md, "vm").
 *
 *   tessera-vm-relay HOST:PORT SANDBOX-ID
 *
 * QEMU's user-mode network runs with restrict=on (the guest reaches nothing
 * of the host or beyond) and one forward: a guest connection to
 * 10.0.2.100:<port> makes QEMU start this program with that connection as its
 * stdin and stdout (guestfwd=...-cmd:, one process per connection). It
 * connects to the gateway at HOST:PORT and copies bytes both ways until either
 * side closes, then exits (closing both): when QEMU ends, its end of the
 * connection closes and every relay of the VM exits with it. It never looks
 * at the bytes (TLS end to end between the guest's supervisor and the
 * gateway). SANDBOX-ID only names the VM in `ps`.
 *
 * Bounds: at most RELAY_MAX_CONNS relays per VM at once (byte-range locks on
 * relay.lock in the sandbox directory, QEMU's working directory: a guest that
 * opens connections in a loop cannot fill the host with processes); 10 s to
 * connect; a connection with no traffic either way for 15 min is closed.
 *
 * Nothing is written to stdout or stderr, which are the guest's connection.
 * Exit status: 0 after a normal close, 1 on any failure. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tsr_build.h"   /* generated: TSR_VERSION, TSR_GIT_DESCRIBE */

#define RELAY_MAX_CONNS 64
#define RELAY_CONNECT_MS 10000
#define RELAY_IDLE_MS (15 * 60 * 1000)
#define RELAY_BUF 65536

/* Take one of RELAY_MAX_CONNS slots: an open-file-description lock on one
 * byte of relay.lock, released when this process exits. -1 when all are
 * taken (or the file cannot be used). */
static int relay_take_slot(void)
{
    int fd = open("relay.lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return -1;
    for (int i = 0; i < RELAY_MAX_CONNS; i++) {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = i, .l_len = 1};
        if (fcntl(fd, F_OFD_SETLK, &fl) == 0) return fd;
    }
    close(fd);
    return -1;
}

/* "HOST:PORT" or "[V6]:PORT" into host and port (bounded copies). */
static int relay_split(const char *addr, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr || colon[1] == '\0' || strlen(colon + 1) >= pcap) return -1;
    const char *h = addr;
    size_t hl = (size_t)(colon - addr);
    if (h[0] == '[') {
        if (hl < 3 || h[hl - 1] != ']') return -1;
        h++;
        hl -= 2;
    }
    if (hl >= hcap) return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    strcpy(port, colon + 1);
    for (const char *p = port; *p != '\0'; p++)
        if (*p < '0' || *p > '9') return -1;
    return 0;
}

/* A connected TCP socket to addr, or -1 (every address tried, each with the
 * connect timeout). */
static int relay_connect(const char *addr)
{
    char host[256], port[8];
    if (relay_split(addr, host, sizeof host, port, sizeof port) != 0) return -1;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if (getaddrinfo(host, port, &hints, &res) != 0) return -1;
    int fd = -1;
    for (const struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    ai->ai_protocol);
        if (fd < 0) continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
            close(fd);
            fd = -1;
            continue;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int err = 0;
        socklen_t el = sizeof err;
        int r;
        do r = poll(&p, 1, RELAY_CONNECT_MS);
        while (r < 0 && errno == EINTR);
        if (r != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

/* Write all of buf to fd (which may be non-blocking), waiting as needed. */
static int relay_write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w > 0) {
            buf += w;
            len -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            if (poll(&p, 1, RELAY_IDLE_MS) != 1) return -1;
            continue;
        }
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    /* The relay links libc only (no OpenSSL to name): release and tree. */
    if (argc == 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)) {
        printf("tessera-vm-relay %s (git %s; links no OpenSSL)\n", TSR_VERSION, TSR_GIT_DESCRIBE);
        return 0;
    }
    if (argc != 3) return 1;
    signal(SIGPIPE, SIG_IGN);
    if (relay_take_slot() < 0) return 1;
    int net = relay_connect(argv[1]);
    if (net < 0) return 1;
    static char buf[RELAY_BUF];
    /* fds[0]: the guest (stdin; stdout is the same socket), fds[1]: the gateway. */
    struct pollfd fds[2] = {{.fd = 0, .events = POLLIN}, {.fd = net, .events = POLLIN}};
    const int out_of[2] = {net, 1};
    for (;;) {
        int r = poll(fds, 2, RELAY_IDLE_MS);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return 1; /* idle too long, or poll failed */
        for (int i = 0; i < 2; i++) {
            if (fds[i].revents == 0) continue;
            ssize_t n = read(fds[i].fd, buf, sizeof buf);
            if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (n == 0) return 0; /* one side closed: the connection is over */
            if (n < 0 || relay_write_all(out_of[i], buf, (size_t)n) != 0) return 1;
        }
    }
}
