/* tsr_spawn: the one spawner (the supervisor's workload, the drivers'
 * detached processes, the process driver's bwrap probe): a started process
 * gets exactly stdin /dev/null, its stdout/stderr (and fd 3), nothing else;
 * a failing step is reported with its errno and leaves nothing running. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tsr_spawn.h"

static char PATH_ENV[] = "PATH=/usr/bin:/bin";
static char *const ENVP[] = {PATH_ENV, NULL};
static char SH[] = "/bin/sh", DASH_C[] = "-c", TRUE_BIN[] = "/bin/true";
static char MISSING[] = "/nonexistent/tessera-test";
static char LS_SCRIPT[] = "ls /proc/self/fd | sort -n | tr '\\n' ' '; pwd; echo x >&3";
static char ECHO_PID[] = "echo $$";

/* Read everything of fd until EOF. */
static size_t slurp(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fd, buf + n, cap - 1 - n)) != 0) {
        if (r < 0 && errno == EINTR) continue;
        assert_true(r > 0);
        n += (size_t)r;
    }
    buf[n] = '\0';
    return n;
}

static void test_runs_with_only_its_descriptors(void **state)
{
    (void)state;
    int out[2], extra[2];
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    assert_int_equal(pipe2(extra, O_CLOEXEC), 0);
    int stray = open("/dev/null", O_RDONLY); /* inheritable: must not reach the child */
    assert_true(stray >= 0);
    char *const argv[] = {SH, DASH_C, LS_SCRIPT, NULL};
    tsr_spawn sp = {.argv = argv, .envp = ENVP, .stdout_fd = out[1], .stderr_fd = out[1],
                    .extra_fd = extra[1], .cwd = "/tmp", .umask = -1};
    tsr_spawn_failure fail;
    pid_t pid = 0;
    assert_int_equal(tsr_spawn_run(&sp, &pid, &fail), 0);
    assert_int_equal(fail.step, 0);
    close(out[1]);
    close(extra[1]);
    close(stray);
    char buf[256], x[8];
    slurp(out[0], buf, sizeof buf);
    slurp(extra[0], x, sizeof x);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* 0-3 and the one ls opened itself for /proc/self/fd. */
    assert_string_equal(buf, "0 1 2 3 4 /tmp\n");
    assert_string_equal(x, "x\n");
    close(out[0]);
    close(extra[0]);
}

static void test_exec_failure(void **state)
{
    (void)state;
    char *const argv[] = {MISSING, NULL};
    tsr_spawn sp = {.argv = argv, .envp = ENVP, .stdout_fd = 2, .stderr_fd = 2,
                    .extra_fd = -1, .umask = -1};
    tsr_spawn_failure fail;
    pid_t pid = 0;
    assert_int_equal(tsr_spawn_run(&sp, &pid, &fail), -1);
    assert_int_equal(fail.step, TSR_SPAWN_EXEC);
    assert_int_equal(fail.err, ENOENT);
    assert_string_equal(tsr_errmsg(), "exec: No such file or directory");
    /* The child was reaped: none is left. */
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

static void test_cwd_and_own_step_failures(void **state)
{
    (void)state;
    char *const argv[] = {TRUE_BIN, NULL};
    tsr_spawn sp = {.argv = argv, .envp = ENVP, .stdout_fd = 2, .stderr_fd = 2,
                    .extra_fd = -1, .umask = -1, .cwd = "/nonexistent-dir"};
    tsr_spawn_failure fail;
    pid_t pid = 0;
    assert_int_equal(tsr_spawn_run(&sp, &pid, &fail), -1);
    assert_int_equal(fail.step, TSR_SPAWN_CWD);
    assert_int_equal(fail.err, ENOENT);
    assert_string_equal(tsr_spawn_step_name(&sp, fail.step), "chdir");

    sp.cwd = NULL;
    assert_int_equal(tsr_spawn_run(&sp, &pid, &fail), 0);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
}

static int refuse_eacces(void *arg)
{
    (void)arg;
    return EACCES;
}

static void test_before_exec_failure_is_named(void **state)
{
    (void)state;
    char *const argv[] = {TRUE_BIN, NULL};
    tsr_spawn sp = {.argv = argv, .envp = ENVP, .stdout_fd = 2, .stderr_fd = 2,
                    .extra_fd = -1, .umask = -1, .before_exec = refuse_eacces,
                    .before_exec_what = "write the pid file"};
    tsr_spawn_failure fail;
    pid_t pid = 0;
    assert_int_equal(tsr_spawn_run(&sp, &pid, &fail), -1);
    assert_int_equal(fail.step, TSR_SPAWN_BEFORE_EXEC);
    assert_int_equal(fail.err, EACCES);
    assert_string_equal(tsr_errmsg(), "write the pid file: Permission denied");
}

/* Detached: the process is not our child, and it runs. */
static void test_detach(void **state)
{
    (void)state;
    int out[2];
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    char *const argv[] = {SH, DASH_C, ECHO_PID, NULL};
    tsr_spawn sp = {.argv = argv, .envp = ENVP, .stdout_fd = out[1], .stderr_fd = out[1],
                    .extra_fd = -1, .umask = 077, .detach = true};
    tsr_spawn_failure fail;
    pid_t pid = 0;
    assert_int_equal(tsr_spawn_run(&sp, &pid, &fail), 0);
    close(out[1]);
    char buf[32];
    slurp(out[0], buf, sizeof buf);
    close(out[0]);
    assert_int_equal(atoi(buf), pid);
    assert_int_equal(waitpid(pid, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runs_with_only_its_descriptors),
        cmocka_unit_test(test_exec_failure),
        cmocka_unit_test(test_cwd_and_own_step_failures),
        cmocka_unit_test(test_before_exec_failure_is_named),
        cmocka_unit_test(test_detach),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
