/* tessera-supervisor: runs inside a sandbox, keeps its identity fresh, runs
 * the workload with fewer privileges, and ships its logs (docs/supervisor.md).
 *
 *   tessera-supervisor --identity-dir DIR --gateway HOST:PORT [--gateway ...] --trust-domain TD
 *       [--sandbox-id ID] [--workload-uid UID --workload-gid GID]
 *       [--allow-same-uid] [--min-rotate-seconds N] [--renew-before DURATION]
 *       [--poll-seconds N] [--driver NAME] [--enforced DOMAINS] [-- COMMAND [ARGS...]]
 *
 * Threads: main (signals, the workload's life, exit), control (rotation and
 * config poll, sup_control), log reader and log sender (sup_logs). Every
 * signal we handle is blocked in all threads and read from a signalfd. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ca_spiffe.h"
#include "cl_grpc.h"
#include "cl_tls.h"
#include "sup_control.h"
#include "sup_gateway.h"
#include "sup_identity.h"
#include "sup_logs.h"
#include "sup_rotate.h"
#include "sup_workload.h"
#include "tsr_time.h"
#include "tsr_version.h"

#define TERM_GRACE_MS 10000     /* SIGTERM -> SIGKILL for the workload on a fatal end */
#define DRAIN_GRACE_MS 2000     /* reading the pipes after the workload exited */
#define FLUSH_MS 5000           /* delivering queued log lines at exit */
#define DEFAULT_POLL_S 30

extern char **environ;

typedef struct options {
    const char *identity_dir;
    sup_gateways *gateways;  /* every --gateway, in order */
    const char *trust_domain;
    const char *sandbox_id;
    bool uid_given, gid_given, allow_same_uid;
    uid_t uid;
    gid_t gid;
    int64_t min_rotate_s;
    int64_t renew_before_s;   /* 0: not given */
    int64_t poll_s;
    const char *driver;   /* the driver that started us (NULL: not told) */
    unsigned enforced;    /* SUP_ENF_* the driver enforces */
    char **command;       /* NULL: no workload */
} options;

/* The first fatal end wins; main learns of it through an eventfd. */
static _Atomic int fatal_code;
static int fatal_efd = -1;

static void raise_fatal(enum sup_exit code)
{
    int expected = 0;
    if (atomic_compare_exchange_strong(&fatal_code, &expected, (int)code)) {
        uint64_t one = 1;
        ssize_t w = write(fatal_efd, &one, sizeof one);
        (void)w;
    }
}

static void on_control_fatal(void *arg, enum sup_exit code, const char *message)
{
    (void)arg;
    (void)message; /* already logged by the control thread */
    raise_fatal(code);
}

static void on_sender_fatal(void *arg, const cl_status *st)
{
    (void)arg;
    sup_log("gateway refused our identity on PushSandboxLogs: %s: %s", cl_status_name(st->code),
            st->message);
    raise_fatal(SUP_EXIT_REVOKED);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tessera-supervisor --gateway HOST:PORT [--gateway ...] [--identity-dir DIR]\n"
            "           [--trust-domain TD] [--sandbox-id ID]\n"
            "           [--workload-uid UID] [--workload-gid GID] [--allow-same-uid]\n"
            "           [--min-rotate-seconds N] [--renew-before DURATION] [--poll-seconds N]\n"
            "           [--driver NAME]\n"
            "           [--enforced DOMAINS] [-- COMMAND [ARGS...]]\n"
            "       tessera-supervisor --version\n"
            "  --identity-dir DIR        cert.pem, key.pem, bundle.pem (default %s)\n"
            "  --gateway HOST:PORT       a gateway (must be spiffe://TD/gateway); repeat it for\n"
            "                            replicas: tried in order, a name resolving to several\n"
            "                            addresses each of them, the last that answered first\n"
            "  --trust-domain TD         default %s\n"
            "  --sandbox-id ID           refuse to start unless the certificate is for ID\n"
            "  --workload-uid/-gid       ids of the workload (default %d when run as root)\n"
            "  --allow-same-uid          run the workload as our own uid (it can then read\n"
            "                            the identity key: only when no other uid exists)\n"
            "  --min-rotate-seconds N    never rotate sooner than N s after the last (default %d)\n"
            "  --renew-before DURATION   rotate at the latest when DURATION of the certificate's\n"
            "                            lifetime is left (1s..24h, e.g. 20m; default: at half)\n"
            "  --poll-seconds N          check the sandbox config every N s (default %d, 0 off)\n"
            "  --driver NAME             the driver that started us (named in policy reports)\n"
            "  --enforced DOMAINS        policy domains that driver enforces: none (default)\n"
            "                            or a list of filesystem,network,process\n"
            "exit: the workload's status (128+signal if killed); 2 usage or refused to start;\n"
            "      3 certificate expired while the gateway was unreachable; 4 identity refused\n"
            "      by the gateway (revoked, sandbox deleted); 5 policy invalid; 126/127 the\n"
            "      workload could not be started\n",
            SUP_IDENTITY_DEFAULT_DIR, CL_TLS_DEFAULT_TRUST_DOMAIN, SUP_NOBODY_ID,
            SUP_MIN_ROTATE_DEFAULT_S, DEFAULT_POLL_S);
}

static int parse_int(const char *flag, const char *text, int64_t lo, int64_t hi, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "tessera-supervisor: %s: expected an integer %lld..%lld, got '%s'\n", flag,
                (long long)lo, (long long)hi, text);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_options(int argc, char **argv, sup_gateways *gateways, options *o)
{
    enum { O_DIR = 1, O_GW, O_TD, O_SID, O_UID, O_GID, O_SAME, O_MINROT, O_BEFORE, O_POLL,
           O_DRIVER, O_ENFORCED, O_HELP };
    static const struct option longopts[] = {
        {"identity-dir", required_argument, NULL, O_DIR},
        {"gateway", required_argument, NULL, O_GW},
        {"trust-domain", required_argument, NULL, O_TD},
        {"sandbox-id", required_argument, NULL, O_SID},
        {"workload-uid", required_argument, NULL, O_UID},
        {"workload-gid", required_argument, NULL, O_GID},
        {"allow-same-uid", no_argument, NULL, O_SAME},
        {"min-rotate-seconds", required_argument, NULL, O_MINROT},
        {"renew-before", required_argument, NULL, O_BEFORE},
        {"poll-seconds", required_argument, NULL, O_POLL},
        {"driver", required_argument, NULL, O_DRIVER},
        {"enforced", required_argument, NULL, O_ENFORCED},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    o->gateways = gateways;
    o->identity_dir = SUP_IDENTITY_DEFAULT_DIR;
    o->trust_domain = CL_TLS_DEFAULT_TRUST_DOMAIN;
    o->min_rotate_s = SUP_MIN_ROTATE_DEFAULT_S;
    o->poll_s = DEFAULT_POLL_S;
    int c;
    int64_t v;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        switch (c) {
        case O_DIR: o->identity_dir = optarg; break;
        case O_GW:
            if (sup_gateways_add(o->gateways, optarg) != 0) {
                fprintf(stderr, "tessera-supervisor: --gateway: %s\n", tsr_errmsg());
                return -1;
            }
            break;
        case O_TD: o->trust_domain = optarg; break;
        case O_SID: o->sandbox_id = optarg; break;
        case O_UID:
            if (parse_int("--workload-uid", optarg, 0, 4294967294LL, &v) != 0) return -1;
            o->uid = (uid_t)v;
            o->uid_given = true;
            break;
        case O_GID:
            if (parse_int("--workload-gid", optarg, 0, 4294967294LL, &v) != 0) return -1;
            o->gid = (gid_t)v;
            o->gid_given = true;
            break;
        case O_SAME: o->allow_same_uid = true; break;
        case O_MINROT:
            if (parse_int("--min-rotate-seconds", optarg, 1, 86400, &o->min_rotate_s) != 0)
                return -1;
            break;
        case O_BEFORE:
            if (tsr_duration_parse(optarg, &o->renew_before_s) != 0 || o->renew_before_s < 1 ||
                o->renew_before_s > SUP_RENEW_BEFORE_MAX_S) {
                fprintf(stderr, "tessera-supervisor: --renew-before: expected a duration "
                                "1s..24h, got '%.40s'\n", optarg);
                return -1;
            }
            break;
        case O_POLL:
            if (parse_int("--poll-seconds", optarg, 0, 86400, &o->poll_s) != 0) return -1;
            break;
        case O_DRIVER:
            if (strlen(optarg) == 0 || strlen(optarg) > 32 ||
                strspn(optarg, "abcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(optarg)) {
                fprintf(stderr, "tessera-supervisor: --driver: expected [a-z0-9_-]{1,32}, got "
                                "'%.40s'\n", optarg);
                return -1;
            }
            o->driver = optarg;
            break;
        case O_ENFORCED:
            if (sup_enforced_parse(optarg, &o->enforced) != 0) {
                fprintf(stderr, "tessera-supervisor: --enforced: %s\n", tsr_errmsg());
                return -1;
            }
            break;
        case O_HELP: usage(stdout); exit(0);
        default:
            fprintf(stderr, "tessera-supervisor: unknown or incomplete option '%s'\n",
                    argv[optind - 1]);
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        if (strcmp(argv[optind - 1], "--") != 0) {
            fprintf(stderr, "tessera-supervisor: unexpected argument '%s' (put the workload "
                            "after --)\n", argv[optind]);
            return -1;
        }
        o->command = &argv[optind];
    }
    if (o->gateways->n == 0) {
        fprintf(stderr, "tessera-supervisor: --gateway HOST:PORT is required\n");
        usage(stderr);
        return -1;
    }
    if (ca_trust_domain_validate(o->trust_domain, strlen(o->trust_domain)) != 0) {
        fprintf(stderr, "tessera-supervisor: --trust-domain: %s\n", tsr_errmsg());
        return -1;
    }
    if (o->sandbox_id != NULL && ca_uuid_validate(o->sandbox_id, strlen(o->sandbox_id)) != 0) {
        fprintf(stderr, "tessera-supervisor: --sandbox-id must be a lowercase UUID\n");
        return -1;
    }
    if ((o->uid_given || o->gid_given || o->allow_same_uid) && o->command == NULL) {
        fprintf(stderr, "tessera-supervisor: workload options given without a command after --\n");
        return -1;
    }
    return 0;
}

/* Decide the workload's uid/gid, or refuse with the reason. */
static int workload_ids(options *o, bool *drop)
{
    uid_t me = geteuid();
    if (!o->uid_given) o->uid = me == 0 ? SUP_NOBODY_ID : me;
    if (!o->gid_given) {
        if (o->uid_given) {
            struct passwd *pw = getpwuid(o->uid);
            o->gid = pw != NULL ? pw->pw_gid : (gid_t)o->uid;
        } else {
            o->gid = me == 0 ? SUP_NOBODY_ID : getegid();
        }
    }
    if (o->uid == 0) {
        sup_log("refusing to start: the workload never runs as root (uid 0)");
        return -1;
    }
    if (o->uid == me) {
        if (!o->allow_same_uid) {
            sup_log("refusing to start: the workload would run as our own uid %u and could read "
                    "the identity key in %s. Run the supervisor as root (the workload then "
                    "defaults to uid %d), or pass --workload-uid with another uid (which needs "
                    "CAP_SETUID), or accept the risk with --allow-same-uid",
                    (unsigned)me, o->identity_dir, SUP_NOBODY_ID);
            return -1;
        }
        sup_log("WARNING: --allow-same-uid: the workload runs as uid %u, like the supervisor, "
                "and can read the identity key",
                (unsigned)me);
        *drop = false;
        return 0;
    }
    *drop = true;
    return 0;
}

/* ---- start-up calls ------------------------------------------------------------------ */

/* Sleep up to ms; a SIGTERM/SIGINT/SIGHUP during it returns that signal. */
static int startup_sleep(int64_t ms)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    int sig = sigtimedwait(&set, NULL, &ts);
    return sig > 0 ? sig : 0;
}

typedef struct startup {
    sup_config config;
    sup_env_list env;
} startup;

/* GetSandboxConfig, ReportPolicyStatus, GetSandboxProviderEnvironment (only
 * with a workload), retried while the certificate is valid: at once on the
 * next gateway address after an unreachable one while this round has one
 * not tried, else with backoff (docs/supervisor.md, "Several gateways").
 * Returns 0, or the exit code. */
static int startup_calls(sup_gateways *gateways, cl_tls *tls, const sup_identity *id,
                         bool want_env, const char *enforcement, startup *out)
{
    const char *sid = id->peer.identity.name;
    unsigned attempt = 0;
    int64_t unreachable_since = 0;
    sup_round round;
    sup_round_reset(&round);
    memset(out, 0, sizeof *out);
    for (;;) {
        int64_t now = tsr_now_unix();
        if (now >= id->peer.chain_not_after) {
            char at[40], since[40];
            sup_format_time(id->peer.chain_not_after, at, sizeof at);
            sup_format_time(unreachable_since ? unreachable_since : now, since, sizeof since);
            sup_log("certificate expired at %s; gateway unreachable since %s", at, since);
            return SUP_EXIT_EXPIRED;
        }
        cl_conn *conn = NULL;
        cl_status st;
        bool from_server = false, applied = false;
        char why[300] = "";
        const char *step = "connect";
        char key[SUP_TARGET_KEY_MAX];
        int rc = sup_gateways_connect(gateways, &round, tls, SUP_CONNECT_TIMEOUT_MS, &conn, key,
                                      &st);
        if (rc == 0) {
            from_server = true;
            step = "GetSandboxConfig";
            rc = sup_get_config(conn, sid, &out->config, &st);
        }
        if (rc == 0) {
            step = "ReportPolicyStatus";
            rc = sup_report_policy(conn, sid, &out->config, enforcement, &applied, why,
                                   sizeof why, &st);
        }
        if (rc == 0 && applied && want_env) {
            step = "GetSandboxProviderEnvironment";
            rc = sup_get_provider_env(conn, sid, &out->env, &st);
        }
        cl_conn_close(conn);
        if (rc == 0) {
            if (!applied) {
                sup_log("policy version %lld failed the supervisor's validation (%s); reported "
                        "FAILED, not starting",
                        (long long)out->config.policy_version, why);
                sup_config_free(&out->config);
                return SUP_EXIT_POLICY;
            }
            sup_log("policy version %lld validated and reported APPLIED (%s)",
                    (long long)out->config.policy_version, enforcement);
            return 0;
        }
        sup_config_free(&out->config);
        sup_env_list_free(&out->env);
        bool next_now = sup_gateways_next_now(
            gateways, &round, from_server && sup_status_is_unreachable(st.code) ? key : NULL);
        if (from_server && sup_status_is_fatal(st.code)) {
            sup_log("gateway refused our identity on %s: %s: %s", step, cl_status_name(st.code),
                    st.message);
            return SUP_EXIT_REVOKED;
        }
        if (unreachable_since == 0) unreachable_since = now;
        if (next_now) {
            sup_log("start-up %s failed: %s: %s; trying the next gateway address now", step,
                    cl_status_name(st.code), st.message);
            continue;
        }
        int64_t d = sup_backoff_ms(attempt, sup_rand_unit());
        if (attempt < 16) attempt++;
        int64_t left = (id->peer.chain_not_after - now) * 1000;
        if (d > left) d = left > 0 ? left : 0;
        sup_log("start-up %s failed: %s: %s; retrying in %lld ms", step, cl_status_name(st.code),
                st.message, (long long)d);
        int sig = startup_sleep(d);
        if (sig != 0) {
            sup_log("stopped by signal %d during start-up", sig);
            return 128 + sig;
        }
    }
}

/* ---- the workload ------------------------------------------------------------------ */

typedef struct workload {
    pid_t pid;
    bool running;
    int status;
    sup_reader *reader;
} workload;

static int start_workload(const options *o, bool drop, const sup_env_list *plain,
                          const sup_env_list *provider, sup_logq *q, workload *w)
{
    int rc = SUP_EXIT_INTERNAL;
    char **env = NULL, *path = NULL;
    int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
    struct stat st;
    const char *cwd = stat(SUP_WORKSPACE_DIR, &st) == 0 && S_ISDIR(st.st_mode) ? SUP_WORKSPACE_DIR
                                                                               : "/";
    char rejected[512];
    if (sup_env_build_with(environ, plain, provider, cwd, &env, rejected, sizeof rejected) !=
        0) {
        sup_log("workload environment: %s", tsr_errmsg());
        goto out;
    }
    if (rejected[0] != '\0')
        sup_log("sandbox or provider environment: skipped invalid or reserved names: %s",
                rejected);
    if (sup_resolve_command(o->command[0], env, &path) != 0) {
        sup_log("cannot start the workload: %s", tsr_errmsg());
        rc = tsr_errcat() == TSR_E_NOTFOUND ? SUP_EXIT_NOTFOUND : SUP_EXIT_NOEXEC;
        goto out;
    }
    if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
        sup_log("cannot start the workload: pipe: %s", strerror(errno));
        goto out;
    }
    sup_spawn sp = {
        .path = path,
        .argv = o->command,
        .envp = env,
        .drop = drop,
        .uid = o->uid,
        .gid = o->gid,
        .cwd = cwd,
        .stdout_fd = out_pipe[1],
        .stderr_fd = err_pipe[1],
    };
    int exec_errno = 0;
    if (sup_workload_spawn(&sp, &w->pid, &exec_errno) != 0) {
        sup_log("cannot start the workload: %s", tsr_errmsg());
        rc = exec_errno == ENOENT ? SUP_EXIT_NOTFOUND : SUP_EXIT_NOEXEC;
        goto out;
    }
    w->running = true;
    sup_log("workload started: pid %d, uid %u, gid %u, cwd %s: %s", (int)w->pid,
            (unsigned)(drop ? o->uid : geteuid()), (unsigned)(drop ? o->gid : getegid()), cwd,
            path);
    close(out_pipe[1]);
    close(err_pipe[1]);
    out_pipe[1] = err_pipe[1] = -1;
    if (sup_reader_start(out_pipe[0], err_pipe[0], q, &w->reader) != 0) {
        /* Without a reader the workload would block on a full pipe. */
        sup_log("log reader: %s", tsr_errmsg());
        kill(-w->pid, SIGKILL);
        goto out;
    }
    out_pipe[0] = err_pipe[0] = -1;
    rc = 0;
out:
    for (int i = 0; i < 2; i++) {
        if (out_pipe[i] >= 0) close(out_pipe[i]);
        if (err_pipe[i] >= 0) close(err_pipe[i]);
    }
    free(path);
    sup_env_free(env);
    return rc;
}

static void signal_workload(const workload *w, int sig)
{
    if (!w->running) return;
    /* The workload leads its own session: signal its whole process group. */
    if (kill(-w->pid, sig) != 0 && errno == ESRCH) (void)kill(w->pid, sig);
}

static void reap(workload *w)
{
    for (;;) {
        int status;
        pid_t p = waitpid(-1, &status, WNOHANG);
        if (p <= 0) return;
        if (w->running && p == w->pid) {
            w->running = false;
            w->status = status;
            /* Like a container whose first process ended: what it left
             * running in its process group goes with it. */
            (void)kill(-w->pid, SIGKILL);
        }
    }
}

/* Wait for the workload, forward signals, act on a fatal end. Returns the
 * exit code decided by a fatal end or a signal without a workload, or -1
 * when the workload's own status decides. */
static int main_loop(int sfd, workload *w, bool have_workload, sup_control *control)
{
    int64_t kill_at = 0;
    for (;;) {
        if (have_workload && !w->running) return -1;
        int timeout = -1;
        if (kill_at != 0) {
            int64_t left = kill_at - tsr_monotonic_ms();
            if (left <= 0) {
                sup_log("workload did not exit within %d s of SIGTERM: SIGKILL",
                        TERM_GRACE_MS / 1000);
                signal_workload(w, SIGKILL);
                kill_at = 0;
                continue;
            }
            timeout = (int)left;
        }
        struct pollfd pfd[2] = {{sfd, POLLIN, 0}, {fatal_efd, POLLIN, 0}};
        int pr = poll(pfd, 2, timeout);
        if (pr < 0 && errno != EINTR) {
            sup_log("poll: %s", strerror(errno));
            return SUP_EXIT_INTERNAL;
        }
        if (pr <= 0) continue;
        if (pfd[1].revents & POLLIN) {
            uint64_t n;
            ssize_t r = read(fatal_efd, &n, sizeof n);
            (void)r;
            if (!have_workload || !w->running) return atomic_load(&fatal_code);
            if (kill_at == 0) {
                sup_log("terminating the workload (SIGTERM)");
                signal_workload(w, SIGTERM);
                kill_at = tsr_monotonic_ms() + TERM_GRACE_MS;
            }
        }
        if (pfd[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
                int sig = (int)si.ssi_signo;
                if (sig == SIGCHLD) {
                    reap(w);
                } else if (sig == SIGUSR1) {
                    sup_control_rotate_now(control);
                } else if (have_workload) {
                    sup_log("forwarding %s to the workload", strsignal(sig));
                    signal_workload(w, sig);
                } else if (sig == SIGTERM || sig == SIGINT) {
                    sup_log("stopping on %s", strsignal(sig));
                    return 0;
                } else {
                    sup_log("%s ignored (no workload)", strsignal(sig));
                }
            }
        }
    }
}

/* 0, 1, 2 must be open: otherwise a pipe or socket could land there and a
 * stray write to "stderr" would go to the gateway connection. */
static void ensure_std_fds(void)
{
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
        int n = open("/dev/null", O_RDWR);
        if (n >= 0 && n != fd) {
            dup2(n, fd);
            close(n);
        }
    }
}

/* Everything one run holds, in the order it is made. */
typedef struct run {
    options o;
    sigset_t signals;              /* blocked everywhere, read from sfd */
    int sfd;
    bool drop;                     /* the workload runs under another uid */
    sup_logq *q;
    sup_identity *id;              /* until the control thread owns it */
    char sandbox_id[CA_NAME_MAX + 1];   /* a lowercase UUID: verified as a sandbox ID */
    sup_gateways gateways;         /* shared by every thread until exit */
    cl_tls *tls;
    char enforcement[200];
    startup su;
    sup_sender *sender;
    workload w;
    sup_control *control;
} run;

/* Signals: block before any thread exists, read them from a signalfd. */
static void block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGCHLD);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGUSR1);
    sigprocmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Identity: the directory, an interrupted rotation, the files, the leaf.
 * 0, or the exit code of the refusal. */
static int load_identity(run *r)
{
    const options *o = &r->o;
    char note[200];
    if (sup_identity_check_dir(o->identity_dir) != 0 ||
        sup_identity_recover(o->identity_dir, note, sizeof note) != 0) {
        sup_log("refusing to start: %s", tsr_errmsg());
        return SUP_EXIT_USAGE;
    }
    if (note[0] != '\0') sup_log("identity directory: %s", note);
    enum ca_verify_reason reason = CA_VERIFY_OK;
    if (sup_identity_load(o->identity_dir, o->trust_domain, 0, &reason, &r->id) != 0) {
        sup_log("refusing to start: %s", tsr_errmsg());
        return reason == CA_VERIFY_EXPIRED ? SUP_EXIT_EXPIRED : SUP_EXIT_USAGE;
    }
    snprintf(r->sandbox_id, sizeof r->sandbox_id, "%s", r->id->peer.identity.name);
    if (o->sandbox_id != NULL && strcmp(o->sandbox_id, r->sandbox_id) != 0) {
        sup_log("refusing to start: the certificate is for sandbox %s, not %s", r->sandbox_id,
                o->sandbox_id);
        return SUP_EXIT_USAGE;
    }
    char until[40];
    sup_format_time(r->id->peer.not_after, until, sizeof until);
    sup_log("identity %s (serial %s, valid until %s)", r->id->peer.identity.id.text,
            r->id->peer.serial_hex, until);
    return 0;
}

/* The TLS client with our identity. 0, or the exit code. */
static int open_tls(run *r)
{
    const sup_identity *id = r->id;
    cl_tls_config tc = {
        .cert_pem = id->cert_pem,
        .cert_pem_len = id->cert_pem_len,
        .key_pem = id->key_pem,
        .key_pem_len = id->key_pem_len,
        .bundle_pem = id->bundle_pem,
        .bundle_pem_len = id->bundle_pem_len,
        .trust_domain = r->o.trust_domain,
        .verify_host = false, /* the gateway is identified by its SPIFFE ID */
    };
    if (cl_tls_new(&tc, &r->tls) != 0) {
        sup_log("TLS client: %s", tsr_errmsg());
        return SUP_EXIT_INTERNAL;
    }
    return 0;
}

/* The log sender: our queued lines and the workload's reach the gateway. */
static int start_sender(run *r)
{
    sup_sender_config scfg = {
        .q = r->q,
        .gateways = r->o.gateways,
        .tls = r->tls,
        .connect_timeout_ms = SUP_CONNECT_TIMEOUT_MS,
        .on_fatal = on_sender_fatal,
    };
    snprintf(scfg.sandbox_id, sizeof scfg.sandbox_id, "%s", r->sandbox_id);
    if (sup_sender_start(&scfg, &r->sender) != 0) {
        sup_log("log sender: %s", tsr_errmsg());
        return SUP_EXIT_INTERNAL;
    }
    return 0;
}

/* The control thread (rotation, config poll) takes the identity over. */
static int start_control(run *r)
{
    sup_control_config ccfg = {
        .identity_dir = r->o.identity_dir,
        .trust_domain = r->o.trust_domain,
        .gateways = r->o.gateways,
        .tls = r->tls,
        .min_rotate_s = r->o.min_rotate_s,
        .renew_before_s = r->o.renew_before_s,
        .poll_s = r->o.poll_s,
        .policy_version = r->su.config.policy_version,
        .enforcement = r->enforcement,
        .on_fatal = on_control_fatal,
    };
    sup_identity *owned = r->id;
    r->id = NULL;
    if (sup_control_start(&ccfg, owned, &r->control) != 0) {
        sup_log("control thread: %s", tsr_errmsg());
        signal_workload(&r->w, SIGKILL);
        return SUP_EXIT_INTERNAL;
    }
    return 0;
}

/* Identity, TLS, the start-up calls, the log sender, the workload, the
 * control thread. 0, or the exit code of what failed. */
static int start(run *r)
{
    int rc;
    if ((rc = load_identity(r)) != 0 || (rc = open_tls(r)) != 0) return rc;
    fatal_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    r->sfd = signalfd(-1, &r->signals, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fatal_efd < 0 || r->sfd < 0) {
        sup_log("eventfd/signalfd: %s", strerror(errno));
        return SUP_EXIT_INTERNAL;
    }
    sup_enforced_describe(r->o.driver, r->o.enforced, r->enforcement, sizeof r->enforcement);
    rc = startup_calls(r->o.gateways, r->tls, r->id, r->o.command != NULL, r->enforcement, &r->su);
    if (rc != 0 || (rc = start_sender(r)) != 0) return rc;
    if (r->o.command != NULL) {
        rc = start_workload(&r->o, r->drop, &r->su.config.env, &r->su.env, r->q, &r->w);
        if (rc != 0) return rc;
    } else {
        sup_log("no workload: keeping the identity fresh");
    }
    sup_env_list_free(&r->su.env);
    return start_control(r);
}

/* Until the workload ends, a fatal end, or a stop signal; the exit code. */
static int supervise(run *r)
{
    workload *w = &r->w;
    int rc;
    int lr = main_loop(r->sfd, w, r->o.command != NULL, r->control);
    int fc = atomic_load(&fatal_code);
    if (fc != 0) rc = fc;
    else if (lr >= 0) rc = lr;
    else rc = sup_exit_code(w->status);
    if (r->o.command != NULL && !w->running) {
        if (WIFSIGNALED(w->status))
            sup_log("workload exited on signal %d (exit code %d)", WTERMSIG(w->status),
                    sup_exit_code(w->status));
        else
            sup_log("workload exited with status %d", sup_exit_code(w->status));
    }
    return rc;
}

/* Stop the threads, flush the logs we can, free everything; the last line. */
static void shut_down(run *r, int rc)
{
    sup_control_stop(r->control);
    if (r->w.running) {
        /* Only on a start-up failure after the fork: never leave it behind. */
        signal_workload(&r->w, SIGKILL);
        while (waitpid(r->w.pid, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    sup_reader_stop(r->w.reader, DRAIN_GRACE_MS);
    if (r->sender != NULL) {
        /* After the gateway refused us, or with an expired certificate, there
         * is nobody to flush to. */
        bool hopeless = atomic_load(&fatal_code) == SUP_EXIT_REVOKED ||
                        atomic_load(&fatal_code) == SUP_EXIT_EXPIRED;
        int64_t lost = sup_sender_stop(r->sender, hopeless ? 0 : FLUSH_MS);
        sup_log_attach(NULL);
        if (lost > 0) sup_log("%lld log line(s) could not be delivered", (long long)lost);
    }
    sup_log_attach(NULL);
    sup_logq_free(r->q);
    sup_config_free(&r->su.config);
    sup_env_list_free(&r->su.env);
    sup_identity_free(r->id);
    cl_tls_free(r->tls);
    if (r->sfd >= 0) close(r->sfd);
    if (fatal_efd >= 0) close(fatal_efd);
    sup_gateways_fini(&r->gateways);
    /* Always the last line: drivers read how we ended from it (docs/drivers.md). */
    sup_log("exiting with code %d", rc);
}

int main(int argc, char **argv)
{
    ensure_std_fds();
    if (tsr_version_requested(argc, argv)) return tsr_version_print(stdout, "tessera-supervisor");
    umask(077);
#ifndef __SANITIZE_ADDRESS__
    /* No core dumps or ptrace of the process holding the key. (LeakSanitizer
     * needs to ptrace us at exit, so sanitizer builds keep the default.) */
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
#endif
    static run r = {.sfd = -1};
    sup_gateways_init(&r.gateways);
    if (parse_options(argc, argv, &r.gateways, &r.o) != 0) {
        sup_log("exiting with code %d", SUP_EXIT_USAGE);
        return SUP_EXIT_USAGE;
    }
    block_signals(&r.signals);
    if (r.o.command != NULL && workload_ids(&r.o, &r.drop) != 0) {
        sup_log("exiting with code %d", SUP_EXIT_USAGE);
        return SUP_EXIT_USAGE;
    }
    /* Our own lines are queued from the start and reach the gateway once the
     * sender runs. */
    if (sup_logq_new(SUP_LOGQ_DEFAULT_LINES, SUP_LOGQ_DEFAULT_BYTES, &r.q) != 0) {
        sup_log("log queue: %s", tsr_errmsg());
        return SUP_EXIT_INTERNAL;
    }
    sup_log_attach(r.q);
    int rc = start(&r);
    if (rc == 0) rc = supervise(&r);
    shut_down(&r, rc);
    return rc;
}
