/* The driver plugin ABI (docs/drivers.md).
 *
 * A driver is one shared object, build/drivers/<name>.so, exporting exactly
 * one symbol, TSR_DRIVER_ENTRY_SYMBOL, a function returning a constant,
 * versioned table of operations. The gateway dlopen()s it, checks
 * abi_version == TSR_DRIVER_ABI_VERSION and struct_size, and refuses a
 * mismatch with a clear error at start.
 *
 * Identity material crosses the ABI only as in-memory buffers
 * (tsr_driver_identity): at create, and (ABI 2) from
 * tsr_driver_env.mint_identity when a driver needs a fresh one to start a
 * sandbox again; only the gateway mints. A driver places it inside the
 * sandbox (files in a supervisor-only directory, an archive upload, fw_cfg
 * files) and never puts it in environment values, argv, image layers or
 * logs.
 *
 * The workload (ABI 3): tsr_driver_sandbox says what the sandbox runs: an
 * image (the driver's meaning: an engine image, a configured guest image)
 * and the workload's argv. A driver hands the argv to the supervisor as its
 * `-- COMMAND` argument vector, never through a shell. The workload's plain
 * variables do not cross the ABI: the supervisor reads them from the
 * gateway (GetSandboxConfig), so they never become the supervisor's own
 * environment.
 *
 * Every operation returns 0 (TSR_DRIVER_OK) or a negative tsr_driver_result;
 * on failure it writes a one-line reason into err (err_cap bytes, always
 * NUL-terminated). Operations may be called from several gateway threads at
 * once: a driver synchronises its own state. */
#ifndef DRV_ABI_H
#define DRV_ABI_H

#include <stddef.h>
#include <stdint.h>

#define TSR_DRIVER_ABI_VERSION 3u
#define TSR_DRIVER_ENTRY_SYMBOL "tessera_driver_entry"

typedef struct tsr_driver_identity {
    const char *cert_pem;          /* leaf then issuing CA */
    size_t cert_len;
    const char *key_pem;           /* the sandbox's private key: secret */
    size_t key_len;
    const char *bundle_pem;        /* trust bundle (roots) */
    size_t bundle_len;
} tsr_driver_identity;

/* What the gateway tells a driver once, at load. Strings live as long as
 * the driver is loaded. */
typedef struct tsr_driver_env {
    const char *data_dir;          /* gateway data dir; per-sandbox files go under
                                      <data_dir>/sandboxes/<sandbox-id>/ */
    const char *supervisor_path;   /* tessera-supervisor binary on this host */
    const char *gateway_addr;      /* "HOST:PORT" a supervisor dials */
    const char *trust_domain;      /* the gateway's identity is spiffe://<td>/gateway */
    /* Driver options from the gateway config (drivers.<name>.<key>: value). */
    const char *const *option_keys;
    const char *const *option_values;
    size_t n_options;
    /* Log one line (never secrets); may be NULL. */
    void (*log)(void *log_arg, const char *line);
    void *log_arg;
    /* Since ABI 2. A fresh identity for an existing sandbox, minted by the
     * gateway (only the gateway mints), for a driver that cannot carry the
     * sandbox's rotated identity across a restart (vm: the guest's copy dies
     * with the VM). The certificate is recorded (listed, revocable) before this
     * returns; a deleted or unknown sandbox gets none. On 0, *out holds
     * in-memory buffers owned by the gateway: place them, then hand them back
     * with release_identity, which wipes them. May be called from any thread.
     * NULL when the loader cannot mint: a driver then refuses what needs it. */
    int (*mint_identity)(void *mint_arg, const char *sandbox_id, tsr_driver_identity *out,
                         char *err, size_t err_cap);
    void (*release_identity)(void *mint_arg, tsr_driver_identity *identity);
    void *mint_arg;
} tsr_driver_env;

/* What an operation returns (docs/drivers.md, "Errors"). */
enum tsr_driver_result {
    TSR_DRIVER_OK = 0,
    TSR_DRIVER_FAILED = -1,        /* the operation failed (the gateway answers UNAVAILABLE) */
    TSR_DRIVER_INVALID = -2,       /* check: this driver cannot run what the request asks
                                      (INVALID_ARGUMENT) */
    TSR_DRIVER_PRECONDITION = -3,  /* create, start: something outside the request must be
                                      fixed first, and retrying as is will not help: an image
                                      missing in the engine, a sandbox that exits at once
                                      (FAILED_PRECONDITION) */
};

/* Bounds a driver may rely on (the gateway enforces them before a call). */
#define TSR_DRIVER_MAX_COMMAND_ARGS 256
#define TSR_DRIVER_MAX_COMMAND_BYTES 16384 /* the arguments' bytes, a NUL each included */
#define TSR_DRIVER_MAX_IMAGE 512          /* bytes of an image reference */

typedef struct tsr_driver_sandbox {
    const char *id;                /* lowercase UUID */
    const char *name;
    const char *spiffe_id;         /* spiffe://<td>/sandbox/<id> */
    /* Since ABI 3: the workload. */
    const char *image;             /* "" (never NULL): the driver's default */
    const char *const *command;    /* the workload's argv: n_command strings, each without NUL
                                      (the first non-empty), then NULL. n_command 0: the
                                      driver's default workload (none, or its supervisor_args) */
    size_t n_command;
} tsr_driver_sandbox;

enum tsr_driver_state {
    TSR_DRIVER_STATE_UNKNOWN = 0,  /* the driver has never heard of it */
    TSR_DRIVER_STATE_CREATED,
    TSR_DRIVER_STATE_RUNNING,
    TSR_DRIVER_STATE_STOPPED,      /* exited or stopped; may be started again */
    TSR_DRIVER_STATE_FAILED,
};

#define TSR_DRIVER_DETAIL_MAX 1024

/* A sandbox's state as status reports it (since ABI 3). */
typedef struct tsr_driver_status {
    int want_detail;               /* in: 1 = fill exited, exit_code and detail for a STOPPED or
                                      FAILED sandbox (it may cost a log read) */
    enum tsr_driver_state state;   /* out */
    int exited;                    /* out: 1 when exit_code is the supervisor's exit status
                                      (docker: the container's) */
    int exit_code;
    /* out: the supervisor's last lines (the engine's log, the VM's console,
     * supervisor.log), newest last, '\n' between lines, printable UTF-8,
     * NUL-terminated; "" when not asked for, running, or unknown. Never key
     * material: the supervisor never prints any. */
    char detail[TSR_DRIVER_DETAIL_MAX];
} tsr_driver_status;

typedef struct tsr_driver_ops {
    uint32_t abi_version;          /* TSR_DRIVER_ABI_VERSION */
    uint32_t struct_size;          /* sizeof(tsr_driver_ops) */
    const char *name;              /* "process", "docker", "vm" */

    /* A failing init stops the gateway when the driver was configured
     * (options given) or is the default; otherwise it is unavailable. */
    int (*init)(const tsr_driver_env *env, void **ctx, char *err, size_t err_cap);
    void (*fini)(void *ctx);
    /* Since ABI 3. Could create run sb's workload (image, command)? Called
     * before anything is minted or recorded; no side effects. 0, or
     * TSR_DRIVER_INVALID with the reason. */
    int (*check)(void *ctx, const tsr_driver_sandbox *sb, char *err, size_t err_cap);
    /* Create the sandbox and place its identity; not yet running. Keeps what
     * start needs of sb (the workload) with the sandbox. */
    int (*create)(void *ctx, const tsr_driver_sandbox *sb, const tsr_driver_identity *identity,
                  char *err, size_t err_cap);
    /* Start it; fails (TSR_DRIVER_PRECONDITION, with the supervisor's last
     * lines in err) when it is gone again within the driver's
     * start_check_ms. */
    int (*start)(void *ctx, const char *sandbox_id, char *err, size_t err_cap);
    int (*stop)(void *ctx, const char *sandbox_id, char *err, size_t err_cap);
    /* Stop if needed and remove everything, identity files included. */
    int (*destroy)(void *ctx, const char *sandbox_id, char *err, size_t err_cap);
    /* Current state: after a gateway restart to re-attach, and whenever the
     * gateway refreshes a sandbox's state (GetSandbox, ListSandboxes, its
     * periodic reconcile). out->want_detail is set by the caller. */
    int (*status)(void *ctx, const char *sandbox_id, tsr_driver_status *out, char *err,
                  size_t err_cap);
} tsr_driver_ops;

typedef const tsr_driver_ops *(*tsr_driver_entry_fn)(void);

#endif
