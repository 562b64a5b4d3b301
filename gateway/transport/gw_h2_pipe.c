/* Test seam (fuzz/fuzz_h2_session.c, gw_server_int.h): one HTTP/2 server
 * connection without socket or TLS, driven as gw_conn.c drives one. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>

#include "grpc_frame.h"
#include "gw_server_int.h"
#include "tsr_time.h"

struct gw_h2_pipe {
    gw_server s;
    gw_loop w;
    gw_conn c;
    bool closed;
};

int gw_h2_pipe_new(const gw_server_config *cfg, const gw_principal *principal, gw_h2_pipe **out)
{
    *out = NULL;
    TSR_ENSURE(cfg->still_valid != NULL && cfg->authorize != NULL &&
                   (cfg->methods != NULL || cfg->n_methods == 0) &&
                   cfg->max_message_bytes > 0 &&
                   cfg->max_message_bytes <= GRPC_MAX_MESSAGE_LIMIT &&
                   cfg->max_concurrent_streams > 0,
               TSR_E_INPUT, "h2 pipe: incomplete server config");
    gw_h2_pipe *p = calloc(1, sizeof *p);
    TSR_ENSURE(p != NULL, TSR_E_INTERNAL, "out of memory");
    p->s.cfg = *cfg;
    p->s.n_workers = 1;
    p->s.workers = &p->w;
    p->s.stop_efd = -1;
    p->s.conn_rx_budget = GW_CONN_RX_BUDGET(cfg->max_message_bytes);
    p->w.s = &p->s;
    p->w.epfd = p->w.lfd = p->w.tfd = p->w.held_efd = -1;
    p->c.w = &p->w;
    p->c.fd = -1;
    p->c.state = GW_CONN_OPEN;
    snprintf(p->c.peer, sizeof p->c.peer, "pipe");
    p->c.principal = *principal;
    if (gw_h2_setup(&p->s) != 0 || gw_h2_session_new(&p->c) != 0) {
        gw_h2_pipe_free(p);
        return -1;
    }
    *out = p;
    return 0;
}

static int pipe_send(gw_h2_pipe *p, gw_h2_sink sink, void *arg)
{
    for (;;) {
        const uint8_t *data = NULL;
        ssize_t n = nghttp2_session_mem_send(p->c.h2, &data);
        if (n < 0) {
            p->closed = true;
            return TSR_FAIL(TSR_E_PROTO, "HTTP/2 send error: %s", nghttp2_strerror((int)n));
        }
        if (n == 0) return 0;
        if (sink != NULL) sink(arg, data, (size_t)n);
    }
}

int gw_h2_pipe_io(gw_h2_pipe *p, const uint8_t *in, size_t len, gw_h2_sink sink, void *arg)
{
    TSR_ENSURE(!p->closed, TSR_E_STATE, "h2 pipe: connection closed");
    if (len > 0) {
        TSR_ASSERT(in != NULL);
        if (gw_h2_recv(&p->c, in, len) != 0 || p->c.kill) {
            /* gw_conn_kill: GOAWAY, one flush, close. */
            gw_h2_goaway(&p->c, p->c.kill_reason);
            (void)pipe_send(p, sink, arg);
            p->closed = true;
            return TSR_FAIL(TSR_E_PROTO, "%s", p->c.kill_reason);
        }
    }
    TSR_GUARD(pipe_send(p, sink, arg));  /* gw_conn_flush */
    if (gw_h2_done(&p->c)) {  /* gw_conn_settle */
        p->closed = true;
        return TSR_FAIL(TSR_E_PROTO, "HTTP/2 session finished");
    }
    return 0;
}

void gw_h2_pipe_tick(gw_h2_pipe *p, int64_t now_ms)
{
    if (!p->closed) gw_h2_tick(&p->c, now_ms, tsr_now_unix());
}

void gw_h2_pipe_goaway(gw_h2_pipe *p, const char *why)
{
    if (!p->closed) gw_h2_goaway(&p->c, why);
}

void gw_h2_pipe_free(gw_h2_pipe *p)
{
    if (p == NULL) return;
    gw_h2_free(&p->c);
    gw_h2_teardown(&p->s);
    OPENSSL_cleanse(&p->c.principal, sizeof p->c.principal);
    free(p);
}
