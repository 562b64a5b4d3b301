/* The Docker Engine API's answers as the docker driver reads them. The
 * driver is a plugin (docker.so, symbols hidden), and its readers are
 * static functions behind libcurl: the harness includes the driver's source
 * (as tests/unit/test_drv_vm.c does for the vm driver) and calls them on an
 * answer made of the input: dk_version_answer (GET /version: the API
 * version negotiation), dk_create_answer (POST /containers/create: the Id,
 * the warnings), dk_state_of (GET /containers/<name>/json: the label, the
 * state) and dk_fail_status (any error answer's message).
 *
 * Input: [which][HTTP status, u16] then the answer's body.
 * which (mod 4): version, create, inspect, an error of `what`.
 *
 * Invariants: engine text reaches logs and errors only as printable ASCII
 * (every line logged, every error message); a negotiated version is 1.41
 * to 1.43 and no higher than the engine's ApiVersion; a created container's
 * Id is 64 lowercase hex digits; a state comes only from an answer whose
 * label names this sandbox; an error answer is an error of the category
 * its status says. */
#include "drivers/docker/drv_docker.c"
#include "drivers/docker/drv_docker_tar.c"

#include "fuzz/fuzz.h"

#define SANDBOX_UUID "0b7e4c1a-9f2d-4e8b-a6c3-5d1f2e3a4b5c"

static size_t lines_logged;

static void check_printable(const char *s)
{
    for (const char *p = s; *p; p++) FUZZ_CHECK((unsigned char)*p >= 0x20 && *p != 0x7f &&
                                                 (unsigned char)*p < 0x80);
}

static void capture(void *arg, const char *line)
{
    (void)arg;
    check_printable(line);
    lines_logged++;
}

/* The engine's ApiVersion minor (1.<minor>, 1-3 digits), or -1. */
static long engine_minor(const dk_resp *r)
{
    json_t *j = json_loadb(r->body, r->len, JSON_REJECT_DUPLICATES, NULL);
    const char *v = json_string_value(json_object_get(j, "ApiVersion"));
    long minor = -1;
    if (v != NULL && v[0] == '1' && v[1] == '.') {
        char *end = NULL;
        size_t digits = strspn(v + 2, "0123456789");
        if (digits >= 1 && digits <= 3 && v[2 + digits] == '\0') minor = strtol(v + 2, &end, 10);
    }
    json_decref(j);
    return minor;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static dk_ctx c;
    if (c.log.log == NULL) {
        c.log.log = capture;
        c.log.prefix = "docker";
        snprintf(c.socket, sizeof c.socket, "/run/fuzz/docker.sock");
    }
    fuzz_in in = {data, size};
    int which = fuzz_u8(&in) % 4;
    dk_resp r = {.status = fuzz_u16(&in)};
    /* As dk_write_cb leaves it: the body and a NUL after it. */
    r.body = fuzz_strdup(in);
    r.len = in.len;
    tsr_err_clear();
    int rc = 0;
    switch (which) {
    case 0:
        c.api_minor = 0;
        rc = dk_version_answer(&c, &r);
        if (rc == 0) {
            FUZZ_CHECK(r.status == 200);
            FUZZ_CHECK(c.api_minor >= DK_API_MIN_MINOR && c.api_minor <= DK_API_MAX_MINOR);
            FUZZ_CHECK(engine_minor(&r) >= (long)c.api_minor);
        }
        break;
    case 1: {
        char cid[65] = "";
        rc = dk_create_answer(&c, "tessera-" SANDBOX_UUID, &r, cid);
        if (rc == 0) {
            FUZZ_CHECK(strlen(cid) == 64 && strspn(cid, "0123456789abcdef") == 64);
        }
        break;
    }
    case 2: {
        tsr_driver_status status;
        memset(&status, 0, sizeof status);
        rc = dk_state_of(&r, SANDBOX_UUID, &status);
        enum tsr_driver_state state = status.state;
        if (rc == 0) {
            json_t *j = json_loadb(r.body, r.len, JSON_REJECT_DUPLICATES, NULL);
            const char *label = json_string_value(json_object_get(
                json_object_get(json_object_get(j, "Config"), "Labels"), "tessera.sandbox-id"));
            FUZZ_CHECK(label != NULL && strcmp(label, SANDBOX_UUID) == 0);
            json_decref(j);
            FUZZ_CHECK(state == TSR_DRIVER_STATE_CREATED || state == TSR_DRIVER_STATE_RUNNING ||
                       state == TSR_DRIVER_STATE_STOPPED || state == TSR_DRIVER_STATE_FAILED);
            /* An exit status only for a container that ended, within 8 bits. */
            FUZZ_CHECK(!status.exited || ((state == TSR_DRIVER_STATE_STOPPED ||
                                           state == TSR_DRIVER_STATE_FAILED) &&
                                          status.exit_code >= -255 && status.exit_code <= 255));
        }
        break;
    }
    default: {
        rc = dk_fail_status("start the container", &r);
        FUZZ_CHECK(rc == -1);
        enum tsr_errcat want = r.status == 404   ? TSR_E_NOTFOUND
                               : r.status == 409 ? TSR_E_EXISTS
                               : r.status == 400 ? TSR_E_INPUT
                                                 : TSR_E_IO;
        FUZZ_CHECK(tsr_errcat() == want);
        break;
    }
    }
    if (rc != 0) {
        FUZZ_CHECK(rc == -1 && tsr_errmsg()[0] != '\0');
        check_printable(tsr_errmsg());
    }
    free(r.body);
    return 0;
}
