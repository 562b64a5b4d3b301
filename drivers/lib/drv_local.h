/* Local sandboxes, shared by the process and vm drivers (drv_local.c; built
 * into their plugins as drv_util.h says).
 *
 * Layout: <data_dir>/sandboxes/<id>/ (0700) with identity/ (0700; cert.pem,
 * key.pem, bundle.pem 0600), `driver` (the name of the driver that owns it:
 * the process and vm drivers share the directory, and neither touches the
 * other's sandboxes) and what the driver adds (workspace/, logs, the pid
 * file). A sandbox directory appears complete or not at all (built in a
 * staging directory, then renamed into place) and disappears at once (renamed
 * to a tombstone, then deleted).
 *
 * Every operation on one sandbox holds an exclusive flock(2) on its directory:
 * that serialises gateway threads and also several gateway processes (or two
 * driver instances in one process) sharing the data dir.
 *
 * Processes are started detached (double fork, setsid) so they outlive the
 * gateway and are never its zombies. The started process itself writes the
 * pid file "<pid> <starttime> <kind>\n" before it execs, so a pid file exists
 * for every process that ever ran, even if the gateway dies mid-start; the
 * start time (field 22 of /proc/<pid>/stat) detects PID reuse. */
#ifndef DRV_LOCAL_H
#define DRV_LOCAL_H

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "drv_util.h"
#include "tsr_fs.h"
#include "tsr_time.h"

#define DRV_PATH_MAX 4096
/* Room left under <root>/<id>/ for the driver's own file names. */
#define DRV_ROOT_MAX 3000
#define DRV_STALE_SECONDS 600

typedef struct drv_local {
    char root[DRV_PATH_MAX]; /* <data_dir>/sandboxes */
    char driver[16];         /* "process", "vm": written to <id>/driver */
} drv_local;

/* ---- paths and directories -------------------------------------------------- */

/* <root>/<id> or <root>/<id>/<sub>. */
TSR_WUR int drv_local_path(const drv_local *l, const char *id, const char *sub,
                           char *out, size_t cap);

/* Remove `name` under `parent` recursively without following symlinks
 * (a workload may have planted some). Records nothing: returns 0 or an errno
 * so cleanup paths keep the error that made them clean up. */
int drv_rm_tree_at(int parent, const char *name, int depth);

int drv_fsync_dir(const char *path);

/* Staging and tombstone directories older than DRV_STALE_SECONDS are left
 * over by a crash: remove them (younger ones may belong to a live call). */
void drv_local_sweep(const drv_local *l, const drv_logger *lg);

TSR_WUR int drv_local_init(drv_local *l, const char *data_dir, const char *driver,
                           const drv_logger *lg);

/* A file a driver keeps with a sandbox (e.g. its workload's command). */
typedef struct drv_local_file {
    const char *name;
    const void *buf;
    size_t len;
} drv_local_file;

/* Create <root>/<id> with identity/ (and workspace/ when asked) and the
 * driver's files (0600), all or nothing. TSR_E_EXISTS when the sandbox
 * exists. */
TSR_WUR int drv_local_create(const drv_local *l, const char *id,
                             const tsr_driver_identity *ident, int workspace,
                             const drv_local_file *extra, size_t n_extra);

/* ---- the workload ------------------------------------------------------------------ */

/* The command as the `command` file keeps it: each argument and a NUL. */
TSR_WUR int drv_local_command_blob(const tsr_driver_sandbox *sb, char **out,
                                   size_t *len);

/* The workload create kept (the file `command`), as an argv borrowed from
 * *blob (free it), NULL-terminated in argv (room for
 * TSR_DRIVER_MAX_COMMAND_ARGS + 1): *n 0 when the sandbox has none.
 * Bounded: a file larger than the gateway allows, or one not ending in a
 * NUL, is refused. */
TSR_WUR int drv_local_command_read(int sbfd, char **blob, const char **argv,
                                   size_t *n);

/* Open and lock the sandbox's directory (exclusive flock; released by
 * closing *out). *out = -1, returning 0, when there is no such sandbox. */
TSR_WUR int drv_local_lock(const drv_local *l, const char *id, int *out);

/* Unlink the identity files (key first), then rename the directory to a
 * tombstone (the id is gone at once) and delete it. Files are unlinked, not
 * overwritten: on journaling, copy-on-write and flash storage an overwrite
 * does not reach the old blocks anyway. Caller holds the lock (sbfd). */
TSR_WUR int drv_local_remove(const drv_local *l, const char *id, int sbfd);

/* ---- processes -------------------------------------------------------------------- */

typedef struct drv_procinfo {
    char state;               /* R S D Z T ... */
    long ppid;
    long pgrp;
    unsigned long long start; /* clock ticks since boot */
} drv_procinfo;

/* Parse the text of /proc/<pid>/stat. Pure and async-signal-safe (used
 * between fork and exec): 0 ok, -1 malformed. */
int drv_stat_parse(const char *buf, size_t len, drv_procinfo *pi);

/* Digits of v into buf (no NUL); returns the count. Async-signal-safe. */
size_t drv_utoa(unsigned long long v, char *buf);

/* Read a small file whole into buf (async-signal-safe); bytes read or -1. */
ssize_t drv_read_small(const char *path, char *buf, size_t cap);

/* 1 and *pi filled when /proc/<pid>/stat is readable, 0 otherwise. */
int drv_proc_read(pid_t pid, drv_procinfo *pi);

/* The recorded process still runs: same start time (not a reused PID) and
 * not a zombie. */
int drv_proc_alive(pid_t pid, unsigned long long start);

/* 1 once the process is gone, 0 if it still runs after timeout_ms. */
int drv_proc_wait_gone(pid_t pid, unsigned long long start, uint64_t timeout_ms);

/* A live child of `ppid` (bubblewrap's namespace init is the only child of
 * the outer bwrap process); 0 when there is none. /proc/<pid>/task/<tid>/
 * children needs CONFIG_PROC_CHILDREN, so scan. */
pid_t drv_proc_child_of(pid_t ppid, drv_procinfo *out);

/* The pid file: "<pid> <starttime> <kind>\n". */
typedef struct drv_pidrec {
    pid_t pid;
    unsigned long long start;
    char kind[16]; /* "plain", "bwrap", "qemu" */
} drv_pidrec;

/* *present = 0 when there is no pid file; TSR_E_INPUT when it is corrupt. */
TSR_WUR int drv_pidfile_read(int sbfd, const char *name, drv_pidrec *rec,
                             int *present);

/* Signal what a pid file records. "bwrap": the outer bwrap process does not
 * forward signals and its namespace init ignores SIGTERM, so SIGTERM goes to
 * the init's child — the supervisor, in a session of its own (bwrap
 * --new-session) — and its process group, and SIGKILL to the init (which
 * ends the whole pid namespace). Otherwise the process group the
 * recorded process leads (it called setsid), or the process alone. Nothing is
 * sent unless the recorded process is still the one that was started. */
void drv_local_signal(const drv_pidrec *rec, int sig);

/* SIGTERM, up to grace_ms, then SIGKILL. 0 once gone; *killed = 1 if it took
 * SIGKILL. */
TSR_WUR int drv_local_terminate(const drv_pidrec *rec, uint64_t grace_ms,
                                int *killed);

/* The state a locked sandbox's pid file tells: CREATED (never started),
 * RUNNING, STOPPED, or FAILED (unreadable pid file). */
enum tsr_driver_state drv_local_state(int sbfd, drv_pidrec *rec);

/* ---- the ops layer: one operation on one locked sandbox ------------------------- */

/* A driver's operation on the locked sandbox directory sbfd: 0, or -1 with
 * the error recorded. ctx is the driver's context. */
typedef int (*drv_locked_op)(void *ctx, const char *id, int sbfd);

/* Lock <id>, run op, unlock: an ops-table answer, 0 or -1 with err set to
 * "<driver>: <what> <id>: <detail>". A missing sandbox is an error. */
int drv_local_run(const drv_local *l, const char *what, const char *id,
                  drv_locked_op op, void *ctx, char *err, size_t err_cap);

/* Destroy: stop (the driver's stop op), then remove the files, under one
 * lock. A sandbox that does not exist is destroyed already: success. */
int drv_local_destroy(const drv_local *l, const drv_logger *lg, const char *id,
                      drv_locked_op stop, void *ctx, char *err, size_t err_cap);

/* ---- the supervisor's last lines ---------------------------------------------------- */

/* Where a local sandbox's supervisor speaks: a log file in its directory
 * (process: supervisor.log, its stdout and stderr; vm: console.log, the
 * guest's console), the lines to keep (NULL: all) and the text before the
 * exit status in the line the supervisor's end leaves there. */
typedef struct drv_local_log {
    const char *file;
    const char *only;
    const char *exit_marker;
} drv_local_log;

/* Each start writes this line into the log first: what follows the last
 * one is the current run's. */
#define DRV_START_MARK "--- tessera: started by the driver ---"
#define DRV_TAIL_BYTES 16384

/* The start mark, written to the log (fd, appending) before a start. */
void drv_local_mark(int fd);

/* The last DRV_TAIL_BYTES of a file in the locked sandbox directory, after
 * the last start mark, NUL-terminated (malloc'd; *out NULL when unreadable). */
void drv_local_tail(int sbfd, const char *name, char **out);

/* The current run's last lines (at most 20) into detail and, when the
 * supervisor said how it ended, its exit status. */
void drv_local_detail(int sbfd, const drv_local_log *log, char *detail,
                      size_t cap, int *exited, int *code);

/* The last lines as one line for an error message: " | " between them. */
void drv_local_last_words(int sbfd, const drv_local_log *log, char *out,
                          size_t cap);

/* Status under the lock: UNKNOWN when there is no such sandbox; with
 * st->want_detail, a STOPPED or FAILED one's last lines and exit status
 * from `log`. */
int drv_local_status(const drv_local *l, const char *id, tsr_driver_status *st,
                     const drv_local_log *log, char *err, size_t err_cap);

/* ---- detached spawn ------------------------------------------------------------- */

typedef struct drv_spawn {
    char *const *argv;    /* argv[0] is the path executed */
    char *const *envp;    /* the whole environment (scrubbed by the caller) */
    const char *cwd;
    int log_fd;           /* stdout and stderr */
    int extra_fd;         /* becomes fd 3 (bwrap --info-fd 3), or -1 */
    const char *pid_path; /* written by the child before exec */
    const char *pid_tmp;
    const char *kind;
    int no_new_privs;     /* PR_SET_NO_NEW_PRIVS before exec: nothing it execs
                             (setuid binaries included) gains privileges */
} drv_spawn;

/* The pid file, written by the started process itself right before exec
 * (async-signal-safe; arg is the drv_spawn): 0 or an errno value. */
int drv_spawn_write_pidfile(void *arg);

/* Start sp->argv detached from the gateway (common/tsr_spawn.h, detach): it
 * is not our child (no zombie for the gateway to reap; init adopts it) and it
 * survives a gateway restart. Returns once it has exec'd (or failed to),
 * with its pid. */
TSR_WUR int drv_spawn_detached(const drv_spawn *sp, pid_t *out_pid);

#endif
