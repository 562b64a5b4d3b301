# Tessera — one non-recursive Makefile.
#
#   make            build every binary into build/bin/
#   make test       install deps, build, run every test (unit + integration)
#   make run        install deps, build, bootstrap the PKI, start the gateway
#   make BUILD=asan test   the same suite under ASan+UBSan (output in build/asan/)
#
# Every folder is one layer and one static library (docs/architecture.md);
# a folder's sources are discovered, so adding a file there needs no edit:
#   common/ ca/ grpc/ policy/ client/   libtsr_<folder>.a
#   gateway/<layer>/                    libtsr_gw_<layer>.a, gateway/main.c -> tessera-gateway
#   drivers/lib/                        built PIC into every driver plugin
# Each binary names the libraries it links (LINK_<binary> below) and the
# pkg-config packages they need (PKGS_<library>); tests/integration/
# link_check.sh fails when a binary carries a layer it must not.
#   tests/unit/test_*.c      -> one cmocka binary each

BUILD ?= release
.DEFAULT_GOAL := all
# `make V=1` shows full command lines.
ifeq ($(V),1)
Q :=
else
Q = @echo "  $(if $(filter %.a,$@),AR,$(if $(filter %.o,$@),CC,LD)) $@";
endif
ifeq ($(BUILD),release)
O ?= build
else
O ?= build/$(BUILD)
endif

CC ?= cc
PYTHON := /usr/bin/python3

WARN := -std=c17 -Wall -Wextra -Wpedantic -Wformat=2 -Wshadow -Wcast-qual \
        -Wwrite-strings -Wstrict-prototypes -Wmissing-prototypes -Wvla \
        -Wimplicit-fallthrough -Wnull-dereference -Werror
DEFS := -D_GNU_SOURCE -DOPENSSL_API_COMPAT=30000 -DOPENSSL_NO_DEPRECATED
GW_LAYERS := transport identity rpc service store ops
# Include paths follow the layers too: a folder sees the headers of the
# layers below it only (tests, fuzz harnesses and bench see all of them).
inc = -I. $(foreach d,$(1),-I$(d)) -isystem $(O)/gen
# gateway/service and gateway/store never see the generated protobuf code:
# the service layer takes and returns plain C structs.
inc_noproto = -I. $(foreach d,$(1),-I$(d))
INCS_GW := common ca grpc policy $(GW_LAYERS:%=gateway/%) drivers/abi
INCS := $(call inc,common ca grpc policy client $(GW_LAYERS:%=gateway/%) drivers/abi drivers/lib)

ifeq ($(BUILD),release)
MODE_CFLAGS  := -O2 -g -D_FORTIFY_SOURCE=3 -fstack-protector-strong \
                -fstack-clash-protection -fcf-protection=full -fPIE
MODE_LDFLAGS := -pie -Wl,-z,relro,-z,now
else ifeq ($(BUILD),asan)
MODE_CFLAGS  := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
                -fno-omit-frame-pointer -fPIE
MODE_LDFLAGS := -fsanitize=address,undefined -pie
else ifeq ($(BUILD),debug)
MODE_CFLAGS  := -O0 -g3 -fPIE
MODE_LDFLAGS := -pie
else ifeq ($(filter $(BUILD),fuzz fuzzcov),)   # fuzz, fuzzcov: flags in the fuzzing section
$(error unknown BUILD=$(BUILD): use release, asan, debug, fuzz or fuzzcov)
endif

# pkg-config is queried lazily so `make deps` works before the -dev packages
# exist. Each library names the packages it uses; a binary links the packages
# of the libraries on its link list, nothing else.
PKGS_common  := yaml-0.1 jansson
PKGS_ca      := openssl
PKGS_proto   := libprotobuf-c
PKGS_grpc    :=
PKGS_policy  :=
PKGS_client  := openssl libnghttp2
PKGS_gw      := openssl libnghttp2 sqlite3 libpq zlib libsystemd
PKGS_ALL     := openssl libnghttp2 libprotobuf-c yaml-0.1 sqlite3 libpq jansson zlib libsystemd
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS_ALL))
pkg_libs = $(shell pkg-config --libs $(sort $(foreach l,$(1),$(PKGS_$(l)))))
CMOCKA_CFLAGS = $(shell pkg-config --cflags cmocka)
CMOCKA_LIBS   = $(shell pkg-config --libs cmocka)

ALL_CFLAGS  = $(WARN) $(DEFS) $(INCS) $(MODE_CFLAGS) $(PKG_CFLAGS) $(CFLAGS) -MMD -MP
ALL_LDFLAGS = $(MODE_LDFLAGS) $(LDFLAGS)

# ---- generated protobuf-c code -------------------------------------------
PROTOS    := proto/tessera/v1/gateway.proto proto/grpc/health/v1/health.proto \
             proto/grpc/reflection/v1/reflection.proto proto/grpc/reflection/v1alpha/reflection.proto
PROTO_C   := $(PROTOS:proto/%.proto=$(O)/gen/%.pb-c.c)
PROTO_H   := $(PROTOS:proto/%.proto=$(O)/gen/%.pb-c.h)
PROTO_OBJ := $(PROTO_C:%.c=%.o)
# Generated sources are kept (not intermediate); only these: an empty .SECONDARY
# would make every target secondary, and then FORCE (the flags file) and the
# -MP rules of a moved header never trigger a rebuild.
.SECONDARY: $(PROTO_C) $(PROTO_H)

$(O)/gen/%.pb-c.c $(O)/gen/%.pb-c.h: proto/%.proto
	@mkdir -p $(O)/gen
	@echo "  PROTOC $<"; protoc-c -Iproto --c_out=$(O)/gen $<

# Generated code is compiled without -Werror-level pedantry it was not written for.
$(PROTO_OBJ): %.o: %.c $(O)/.flags
	$(Q)$(CC) -std=c17 -O2 -g -fPIE $(DEFS) -isystem $(O)/gen $(MODE_CFLAGS) $(PKG_CFLAGS) -c $< -o $@

# ---- gRPC server reflection data (gateway/rpc/gw_reflection.c) -------------------
# The descriptor set of $(PROTOS) with their imports, as C data
# (scripts/gen_reflection.py): embedded at build time, served as is.
REFL_SET := $(O)/gen/descriptors.pb
REFL_C   := $(O)/gen/gw_reflection_data.c
REFL_OBJ := $(O)/gen/gw_reflection_data.o
$(REFL_SET): $(PROTOS)
	@mkdir -p $(O)/gen
	@echo "  PROTOC $@"; $(PYTHON) -m grpc_tools.protoc -Iproto --include_imports \
	    --descriptor_set_out=$@ $(PROTOS)
$(REFL_C): $(REFL_SET) scripts/gen_reflection.py
	@echo "  GEN $@"; $(PYTHON) scripts/gen_reflection.py $< $@
$(REFL_OBJ): $(REFL_C) gateway/rpc/gw_reflection_data.h $(O)/.flags
	$(Q)$(CC) -std=c17 -O2 -g -fPIE $(DEFS) -Igateway/rpc $(MODE_CFLAGS) -c $< -o $@

# ---- version (common/tsr_version.c, `--version` of every binary) -------------
# $(O)/gen/tsr_build.h is rewritten only when the release or `git describe`
# changes, so that a commit rebuilds one object.
TSR_VERSION := 0.1.0
TSR_GIT_DESCRIBE := $(shell git describe --always --dirty --tags 2>/dev/null || echo unknown)
TSR_BUILD_H = printf '\#define TSR_VERSION "%s"\n\#define TSR_GIT_DESCRIBE "%s"\n' \
	'$(TSR_VERSION)' '$(TSR_GIT_DESCRIBE)'
$(O)/gen/tsr_build.h: FORCE
	@mkdir -p $(O)/gen
	@$(TSR_BUILD_H) | cmp -s - $@ || $(TSR_BUILD_H) > $@
$(O)/obj/common/tsr_version.o: $(O)/gen/tsr_build.h

# ---- sources and libraries --------------------------------------------------
CERTGEN_SRC := $(wildcard certgen/*.c)
SUPERVISOR_SRC := $(wildcard supervisor/*.c)
CLI_SRC     := $(wildcard cli/*.c)
# One shared object per driver directory: drivers/<name>/*.c -> build/drivers/<name>.so
# (drivers/abi is the plugin interface, drivers/lib the code the plugins share).
DRIVER_NAMES := $(filter-out abi lib,$(notdir $(patsubst %/,%,$(dir $(wildcard drivers/*/*.c)))))
DRIVER_SOS   := $(sort $(foreach d,$(DRIVER_NAMES),$(O)/drivers/$(d).so))
# The few common modules a driver links, built position-independent and
# hidden inside each .so (only the ABI entry is exported).
DRIVER_COMMON_SRC := common/tsr_err.c common/tsr_fs.c common/tsr_name.c common/tsr_spawn.c \
                     common/tsr_time.c
UNIT_SRC    := $(wildcard tests/unit/test_*.c)
TESTUTIL_SRC := $(wildcard tests/unit/tu_*.c)
TESTBIN_SRC := $(wildcard tests/bin/*.c)

obj = $(patsubst %.c,$(O)/obj/%.o,$(1))
lib = $(foreach l,$(1),$(O)/lib/libtsr_$(l).a)

# One static library per folder: name -> folder.
LIBDIR_common := common
LIBDIR_ca     := ca
LIBDIR_grpc   := grpc
LIBDIR_policy := policy
LIBDIR_client := client
LIBDIR_drvlib := drivers/lib
PKGS_drvlib   := openssl
$(foreach l,$(GW_LAYERS),$(eval LIBDIR_gw_$(l) := gateway/$(l))$(eval PKGS_gw_$(l) := $(PKGS_gw)))
FOLDER_LIBS := common ca grpc policy client drvlib $(GW_LAYERS:%=gw_%)
$(foreach l,$(FOLDER_LIBS),$(eval $(call lib,$(l)): $(call obj,$(wildcard $(LIBDIR_$(l))/*.c))))
$(call lib,proto): $(PROTO_OBJ) $(REFL_OBJ)
LIB_TESTUTIL := $(O)/lib/libtsr_testutil.a
$(LIB_TESTUTIL): $(call obj,$(TESTUTIL_SRC))

# Link lists, dependants first. The gateway's layers call each other both ways
# (e.g. the transport calls the authorization of identity/, identity/ reads
# the app state of service/), so they are linked as one group.
LINK_gateway    := $(GW_LAYERS:%=gw_%) policy grpc ca proto common
LINK_supervisor := client policy grpc ca proto common
LINK_cli        := client grpc ca proto common
LINK_certgen    := gw_store ca common
# Tests, fuzz harnesses and bench tools reach into every layer.
LINK_tests      := client $(GW_LAYERS:%=gw_%) policy grpc drvlib ca proto common
# --as-needed: a binary names only the shared libraries it really calls
# (common/ holds tsr_json, but only binaries that write JSON need jansson).
# The gateway layers a binary links, as one group (they call each other both ways).
gw_group = -Wl,--start-group $(call lib,$(filter gw_%,$(1))) -Wl,--end-group
link_args = -Wl,--as-needed $(if $(filter gw_%,$(1)),$(call gw_group,$(1))) \
            $(call lib,$(filter-out gw_%,$(1))) $(call pkg_libs,$(1)) -lpthread
LIBS_ALL   := $(call lib,$(LINK_tests))
LDLIBS_ALL  = $(call link_args,$(LINK_tests)) -ldl

BIN_CERTGEN := $(O)/bin/certgen
BIN_GATEWAY := $(O)/bin/tessera-gateway
BIN_SUPERVISOR := $(O)/bin/tessera-supervisor
BIN_CLI := $(O)/bin/tessera
BINS := $(BIN_CERTGEN) $(BIN_GATEWAY) $(BIN_SUPERVISOR) $(BIN_CLI) $(DRIVER_SOS)
UNIT_BINS := $(patsubst tests/unit/%.c,$(O)/tests/%,$(UNIT_SRC))
# Test-only plugins (e.g. a driver with the wrong ABI): tests/drivers/<name>/*.c
TEST_DRIVER_SOS := $(sort $(foreach d,$(notdir $(patsubst %/,%,$(dir $(wildcard tests/drivers/*/*.c)))),$(O)/tests/drivers/$(d).so))
# Helper programs that integration tests drive (not tests themselves).
TEST_PROGS := $(patsubst tests/bin/%.c,$(O)/tests/bin/%,$(TESTBIN_SRC))

.PHONY: all deps test run demo valgrind clean unit-tests
all: $(BINS)

# Rebuild everything when the flags change.
$(O)/.flags: FORCE
	@mkdir -p $(O)
	@echo '$(ALL_CFLAGS) $(ALL_LDFLAGS)' | cmp -s - $@ || echo '$(ALL_CFLAGS) $(ALL_LDFLAGS)' > $@
FORCE:

$(O)/obj/common/%.o:     INCS = $(call inc,common)
$(O)/obj/ca/%.o:         INCS = $(call inc,common ca)
$(O)/obj/grpc/%.o:       INCS = $(call inc,common grpc)
$(O)/obj/policy/%.o:     INCS = $(call inc,common policy)
$(O)/obj/client/%.o:     INCS = $(call inc,common ca grpc client)
$(O)/obj/supervisor/%.o: INCS = $(call inc,common ca grpc policy client)
$(O)/obj/cli/%.o:        INCS = $(call inc,common ca grpc client)
$(O)/obj/certgen/%.o:    INCS = $(call inc,common ca gateway/store)
$(O)/obj/gateway/%.o:    INCS = $(call inc,$(INCS_GW))
$(O)/obj/gateway/service/%.o: INCS = $(call inc_noproto,$(filter-out gateway/rpc,$(INCS_GW)))
$(O)/obj/gateway/store/%.o:   INCS = $(call inc_noproto,$(filter-out gateway/rpc,$(INCS_GW)))
$(O)/pic/drivers/%.o:    INCS = $(call inc,common drivers/abi drivers/lib)

$(O)/obj/%.o: %.c $(O)/.flags | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

$(O)/lib/%.a:
	@mkdir -p $(dir $@)
	@rm -f $@
	$(Q)$(if $^,ar rcs $@ $^,printf '!<arch>\n' > $@)

# tessera-gateway: every layer of gateway/, the sandbox policy, gRPC framing, the CA.
$(BIN_GATEWAY): $(call obj,gateway/main.c) $(call lib,$(LINK_gateway))
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $(call obj,gateway/main.c) $(call link_args,$(LINK_gateway)) -ldl

# tessera-supervisor: the client and what it shares with the gateway; no gateway code, no sqlite.
$(BIN_SUPERVISOR): $(call obj,$(SUPERVISOR_SRC)) $(call lib,$(LINK_supervisor))
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $(call obj,$(SUPERVISOR_SRC)) $(call link_args,$(LINK_supervisor))

# tessera (the CLI): the client only.
$(BIN_CLI): $(call obj,$(CLI_SRC)) $(call lib,$(LINK_cli))
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $(call obj,$(CLI_SRC)) $(call link_args,$(LINK_cli))

# certgen: the CA, and the store where it records the certificates it issues.
$(BIN_CERTGEN): $(call obj,$(CERTGEN_SRC)) $(call lib,$(LINK_certgen))
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $(call obj,$(CERTGEN_SRC)) $(call link_args,$(LINK_certgen))

# ---- driver plugins -----------------------------------------------------------
# Per-driver extra libraries, e.g. DRV_LIBS_docker (libcurl for the Engine API).
DRV_LIBS_docker = $(shell pkg-config --libs libcurl jansson)
DRV_CFLAGS_docker = $(shell pkg-config --cflags libcurl jansson)
# jansson for the vm driver's QMP (one JSON object per line); its relay stays libc-only.
DRV_LIBS_vm = $(shell pkg-config --libs jansson)
DRV_CFLAGS_vm = $(shell pkg-config --cflags jansson)
pic = $(patsubst %.c,$(O)/pic/%.o,$(1))

$(O)/pic/%.o: %.c $(O)/.flags | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(filter-out -fPIE,$(ALL_CFLAGS)) -fPIC -fvisibility=hidden \
	    $(DRV_CFLAGS_$(word 2,$(subst /, ,$<))) -c $< -o $@

.SECONDEXPANSION:
DRIVER_LINK = $(Q)$(CC) $(filter-out -pie,$(ALL_LDFLAGS)) -shared -fPIC -Wl,--no-undefined \
	-o $@ $^ $(DRV_LIBS_$*) $(shell pkg-config --libs openssl) -lpthread
# drivers/lib built PIC into an archive: a plugin takes the modules it calls.
DRVLIB_PIC := $(O)/pic/libtsr_drvlib.a
$(DRVLIB_PIC): $(call pic,$(wildcard drivers/lib/*.c))
	@rm -f $@
	$(Q)ar rcs $@ $^
$(O)/drivers/%.so: $$(call pic,$$(wildcard drivers/%/*.c)) $(call pic,$(DRIVER_COMMON_SRC)) $(DRVLIB_PIC)
	@mkdir -p $(dir $@)
	$(DRIVER_LINK)
$(O)/tests/drivers/%.so: $$(call pic,$$(wildcard tests/drivers/%/*.c)) $(call pic,$(DRIVER_COMMON_SRC))
	@mkdir -p $(dir $@)
	$(DRIVER_LINK)

# Unit tests link the test utilities (tests/unit/tu_*.c) first.
$(O)/tests/%: $(O)/obj/tests/unit/%.o $(LIB_TESTUTIL) $(LIBS_ALL)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $< $(LIB_TESTUTIL) $(LDLIBS_ALL) $(CMOCKA_LIBS)

$(O)/obj/tests/unit/%.o: ALL_CFLAGS += $(CMOCKA_CFLAGS) -Itests/unit

$(O)/tests/bin/%: $(O)/obj/tests/bin/%.o $(LIBS_ALL)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $< $(LDLIBS_ALL)

# Python stubs for the integration tests (stock grpcio client).
PY_STUBS := $(O)/py/tessera/v1/gateway_pb2_grpc.py
$(PY_STUBS): $(PROTOS)
	@mkdir -p $(O)/py
	$(PYTHON) -m grpc_tools.protoc -Iproto --python_out=$(O)/py --grpc_python_out=$(O)/py $(PROTOS)

unit-tests: $(UNIT_BINS) $(TEST_PROGS) $(TEST_DRIVER_SOS)

deps:
	@scripts/deps.sh

test: deps
	@$(MAKE) --no-print-directory all unit-tests $(PY_STUBS)
	@BUILD=$(BUILD) O=$(O) tests/run.sh

# `make run`: PKI bootstrap on first run, then the gateway in the foreground.
PKI_DIR := var/pki
run: deps
	@$(MAKE) --no-print-directory all $(PY_STUBS)
	@scripts/run.sh $(O) $(PKI_DIR)

# `make valgrind`: every unit test under valgrind memcheck (not part of `make
# test`), on the debug build: valgrind mistakes FORTIFY's memmove for an
# overlapping memcpy.
valgrind: deps
	@$(MAKE) --no-print-directory BUILD=debug all unit-tests
	@scripts/valgrind.sh build/debug

# `make demo`: a scripted tour on a throwaway PKI and gateway.
demo: deps
	@$(MAKE) --no-print-directory all $(PY_STUBS)
	@scripts/demo.sh $(O)

clean:
	rm -rf build

-include $(shell find $(O)/obj $(O)/pic -name '*.d' 2>/dev/null)

# ---- sandbox-image: the docker driver's image (docs/drivers.md, "The sandbox image") ----
# `make sandbox-image [DOCKER_SOCKET=/run/podman/podman.sock]` builds
# tessera-sandbox:latest from this build's supervisor and Debian's
# busybox-static (scripts/sandbox_image.py; no registry) and loads it into the
# engine at DOCKER_SOCKET (default: the driver's default socket). The tests
# build it themselves into the engines they start.
DOCKER_SOCKET ?= /var/run/docker.sock
.PHONY: sandbox-image
sandbox-image: deps
	@$(MAKE) --no-print-directory $(O)/bin/tessera-supervisor
	@$(PYTHON) scripts/sandbox_image.py --supervisor $(O)/bin/tessera-supervisor \
	    --socket $(DOCKER_SOCKET)
# ---- end sandbox-image --------------------------------------------------------

# ---- soak: the bounded sandbox soak, then the slow fault and hostile tests ----
# `make soak` (also BUILD=asan), never part of `make test`:
#   1. tests/soak/soak.py: SOAK_SANDBOXES (200) sandboxes through the real
#      gateway, process driver in bubblewrap, the real supervisor, a rotation
#      every SOAK_ROTATE (30 s), SOAK_SECONDS (600) after SOAK_WARMUP (60 s);
#      asserts rotations, denials, logs, RSS/fd growth, teardown; writes
#      $(O)/soak/results.json (docs/security.md, "Soak"). Needs root.
#   2. tests/integration/test_faults.py and test_hostile.py with TSR_SLOW=1
#      (more SIGKILL rounds, 50k connections).
# `make soak-sandboxes` runs only 1.
.PHONY: soak soak-sandboxes
SOAK_ENV = TSR_BUILD_DIR=$(CURDIR)/$(O) TSR_BIN=$(CURDIR)/$(O)/bin \
	    TSR_ROOT=$(CURDIR) PYTHONPATH=$(CURDIR)/$(O)/py \
	    ASAN_OPTIONS=$${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1} \
	    UBSAN_OPTIONS=$${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
soak-sandboxes: deps
	@$(MAKE) --no-print-directory all $(PY_STUBS)
	@cd $(CURDIR) && $(SOAK_ENV) $(PYTHON) tests/soak/soak.py
soak: soak-sandboxes
	@$(MAKE) --no-print-directory all unit-tests $(PY_STUBS)
	@cd $(CURDIR) && TSR_SLOW=1 $(SOAK_ENV) \
	    $(PYTHON) -m pytest -q -s -p no:cacheprovider tests/integration/test_faults.py \
	    tests/integration/test_hostile.py
# ---- end soak ---------------------------------------------------------------

# ==== fuzzing (fuzz/, docs/fuzzing.md) ==================================
#   make fuzz          the campaign: every harness for FUZZ_SECONDS (default
#                      150) each on its corpus (new inputs:
#                      build/fuzz/corpus/<name>/, crashes: build/fuzz/artifacts/),
#                      per harness exec/s, coverage and corpus growth
#   make fuzz-smoke    CI: replay every committed corpus, then 10 s per harness
#   make fuzz-cov      line coverage of the code each harness targets, from its
#                      committed and grown corpus (clang source-based coverage,
#                      BUILD=fuzzcov, build/fuzzcov/cov/)
#   make BUILD=fuzz fuzz-bins   the variant itself: clang, libFuzzer + ASan +
#                      UBSan, everything in build/fuzz/, harnesses in build/fuzz/bin/
# fuzz/fuzz_<name>.c is one harness; fuzz/corpus/<name>/ its committed corpus.
# `make test` also builds $(O)/tests/fuzzreplay_<name> (the harness + a plain
# main, fuzz/replay_main.c, with the build's own compiler and flags) and
# tests/integration/fuzz_replay.sh replays every corpus through them.
FUZZ_NAMES := $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_SECONDS ?= 150
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_JOBS ?= 2
# A harness of code outside the libraries links its objects
# (FUZZ_OBJS_<name>) and libraries (FUZZ_LDLIBS_<name>); a harness that
# includes a driver's source compiles with that driver's flags.
FUZZ_OBJS_client = $(call obj,$(filter-out supervisor/sup_main.c,$(SUPERVISOR_SRC)))
FUZZ_OBJS_sup_logs = $(FUZZ_OBJS_client)
FUZZ_OBJS_cli = $(call obj,$(filter-out cli/cli_main.c,$(CLI_SRC)))
FUZZ_LDLIBS_docker = $(DRV_LIBS_docker)
$(O)/obj/fuzz/fuzz_docker.o: ALL_CFLAGS += $(DRV_CFLAGS_docker)

ifeq ($(BUILD),fuzzcov)
CC := clang
MODE_CFLAGS  := -g -O1 -fprofile-instr-generate -fcoverage-mapping -fPIE
MODE_LDFLAGS := -fprofile-instr-generate -pie
endif
ifeq ($(BUILD),fuzz)
CC := clang
MODE_CFLAGS  := -g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all \
                -fno-omit-frame-pointer -fPIE
MODE_LDFLAGS := -fsanitize=address,undefined -pie
FUZZ_BINS := $(FUZZ_NAMES:%=$(O)/bin/fuzz_%)

$(FUZZ_BINS): $(O)/bin/fuzz_%: $(O)/obj/fuzz/fuzz_%.o $$(FUZZ_OBJS_$$*) $(LIBS_ALL)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_LDFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJS_$*) $(LDLIBS_ALL) \
	    $(FUZZ_LDLIBS_$*)
# fuzz_rpc loads the in-memory driver plugin (tests/drivers/mem). clang links
# no sanitizer runtime into a shared object: the harness that dlopen()s it
# provides one, so this plugin is linked without --no-undefined.
FUZZ_DRIVER_SOS := $(O)/tests/drivers/mem.so
$(FUZZ_DRIVER_SOS): DRIVER_LINK = $(Q)$(CC) $(filter-out -pie,$(ALL_LDFLAGS)) -shared -fPIC \
	-o $@ $^ $(shell pkg-config --libs openssl) -lpthread
fuzz-bins: $(FUZZ_DRIVER_SOS)
else
FUZZ_REPLAY_BINS := $(FUZZ_NAMES:%=$(O)/tests/fuzzreplay_%)

$(FUZZ_REPLAY_BINS): $(O)/tests/fuzzreplay_%: $(O)/obj/fuzz/fuzz_%.o $(O)/obj/fuzz/replay_main.o \
                     $$(FUZZ_OBJS_$$*) $(LIBS_ALL)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $< $(O)/obj/fuzz/replay_main.o $(FUZZ_OBJS_$*) \
	    $(LDLIBS_ALL) $(FUZZ_LDLIBS_$*)

unit-tests: $(FUZZ_REPLAY_BINS)
endif

.PHONY: fuzz-bins fuzz fuzz-smoke fuzz-cov
fuzz-bins: $(FUZZ_BINS)

fuzz: deps
	@$(MAKE) --no-print-directory BUILD=fuzz fuzz-bins
	@fuzz/run.sh build/fuzz $(FUZZ_SECONDS) $(FUZZ_JOBS) $(FUZZ_NAMES)

fuzz-smoke: deps
	@$(MAKE) --no-print-directory BUILD=fuzz fuzz-bins
	@fuzz/run.sh --replay build/fuzz $(FUZZ_SMOKE_SECONDS) $(FUZZ_JOBS) $(FUZZ_NAMES)

fuzz-cov: deps
	@$(MAKE) --no-print-directory BUILD=fuzzcov $(FUZZ_NAMES:%=build/fuzzcov/tests/fuzzreplay_%) \
	    build/fuzzcov/tests/drivers/mem.so
	@fuzz/cov.sh build/fuzzcov $(FUZZ_NAMES)
# ---- bench: Tessera side by side with real peers (docs/performance.md) -----
# `make bench`: bench/run.sh install puts the Debian peer packages in place
# (cfssl, gRPC C++) when missing, then bench/ is built into $(O)/bench/ (never
# part of `all` or `test`) and bench/run.sh starts everything on loopback,
# prints the table and writes $(O)/bench/results.json.
.PHONY: bench bench-build
BENCH_LOAD := $(O)/bench/bn_load
BENCH_BARE := $(O)/bench/bare_tls
# The gRPC C++ peer (and the gRPC C++ load client) only when libgrpc++-dev is present.
BENCH_GRPC = $(if $(shell pkg-config --exists grpc++ && command -v grpc_cpp_plugin),$(O)/bench/grpc_ref)
$(BENCH_LOAD): bench/bn_load.c $(LIBS_ALL)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_CFLAGS) -MF $@.d $(ALL_LDFLAGS) -o $@ $< $(LDLIBS_ALL)
$(BENCH_BARE): bench/peers/bare_tls.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_CFLAGS) -MF $@.d $(ALL_LDFLAGS) -o $@ $< $(shell pkg-config --libs openssl) -lpthread
$(O)/bench/gen/tessera/v1/gateway.grpc.pb.cc: proto/tessera/v1/gateway.proto
	@mkdir -p $(O)/bench/gen
	@echo "  PROTOC $< (C++)"; protoc -Iproto --cpp_out=$(O)/bench/gen --grpc_out=$(O)/bench/gen \
	    --plugin=protoc-gen-grpc=$$(command -v grpc_cpp_plugin) $<
$(O)/bench/grpc_ref: bench/peers/grpc_ref.cc $(O)/bench/gen/tessera/v1/gateway.grpc.pb.cc
	$(Q)$(CXX) -std=c++17 -O2 -g -I$(O)/bench/gen -o $@ $< $(O)/bench/gen/tessera/v1/gateway.pb.cc \
	    $(O)/bench/gen/tessera/v1/gateway.grpc.pb.cc $$(pkg-config --cflags --libs grpc++ protobuf) -lpthread
# The independent unary client (gRPC C++ async API) for the tail-latency row.
$(O)/bench/grpc_load: bench/peers/grpc_load.cc $(O)/bench/gen/tessera/v1/gateway.grpc.pb.cc
	$(Q)$(CXX) -std=c++17 -O2 -g -I$(O)/bench/gen -o $@ $< $(O)/bench/gen/tessera/v1/gateway.pb.cc \
	    $(O)/bench/gen/tessera/v1/gateway.grpc.pb.cc $$(pkg-config --cflags --libs grpc++ protobuf) -lpthread
bench-build: $(BENCH_LOAD) $(BENCH_BARE) $(BENCH_GRPC) $(if $(BENCH_GRPC),$(O)/bench/grpc_load)
bench: deps
	@bench/run.sh install
	@$(MAKE) --no-print-directory all $(PY_STUBS) bench-build
	@TSR_BUILD_DIR=$(CURDIR)/$(O) TSR_ROOT=$(CURDIR) bench/run.sh
# ---- end bench ----------------------------------------------------------------
# ==== vm driver: host relay and guest image (docs/drivers.md, "vm") ==========
#   make vm-image   $(O)/vm/vmlinuz and $(O)/vm/initrd.img: Debian's kernel
#                   (apt-get download, unpacked into build/vm-cache/ once per
#                   version) and an initramfs with busybox-static and this
#                   build's supervisor (scripts/vm_image.py; rewritten only
#                   when its bytes change). `make test` builds it for the vm tests.
# tessera-vm-relay (drivers/vm/relay/) is the per-connection forward QEMU runs
# for `network: gateway`; it is part of `all`.
BIN_VM_RELAY := $(O)/bin/tessera-vm-relay
all: $(BIN_VM_RELAY)

$(call obj,drivers/vm/relay/vm_relay.c): $(O)/gen/tsr_build.h
$(BIN_VM_RELAY): $(call obj,drivers/vm/relay/vm_relay.c)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^

.PHONY: vm-image
vm-image: deps
	@$(MAKE) --no-print-directory $(BIN_SUPERVISOR) $(BIN_VM_RELAY)
	@$(PYTHON) scripts/vm_image.py --out $(O)/vm --cache build/vm-cache \
	    --supervisor $(BIN_SUPERVISOR)
test: vm-image
# ---- end vm driver ----------------------------------------------------------------
# ---- install (docs/operations.md, "Installing") -------------------------------
#   make install [PREFIX=/usr/local] [DESTDIR=] [SYSCONFDIR=/etc]
# binaries in $(PREFIX)/bin, driver plugins in $(PREFIX)/lib/tessera/drivers
# (where tessera-gateway looks by default), the systemd unit in
# $(PREFIX)/lib/systemd/system, the tessera user in $(SYSCONFDIR)/sysusers.d,
# an example configuration $(SYSCONFDIR)/tessera/gateway.yaml.example (a real
# gateway.yaml is never touched) and the docs in $(PREFIX)/share/doc/tessera.
# The unit and the example name the paths of this install (INSTALL_SUBST
# rewrites the default layout's).
PREFIX ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= /etc
INSTALL_BINDIR := $(PREFIX)/bin
INSTALL_LIBDIR := $(PREFIX)/lib/tessera
INSTALL_UNITDIR ?= $(PREFIX)/lib/systemd/system
INSTALL_SYSUSERSDIR ?= $(SYSCONFDIR)/sysusers.d
INSTALL_DOCDIR ?= $(PREFIX)/share/doc/tessera
INSTALL_BINS := certgen tessera tessera-gateway tessera-supervisor tessera-vm-relay
INSTALL_SUBST = sed -e 's|/usr/local/bin/|$(INSTALL_BINDIR)/|g' \
	-e 's|/usr/local/lib/tessera/|$(INSTALL_LIBDIR)/|g' \
	-e 's|/usr/local/share/doc/tessera/|$(INSTALL_DOCDIR)/|g' \
	-e 's|/etc/tessera|$(SYSCONFDIR)/tessera|g'
.PHONY: install
install: all
	install -d -m 0755 $(DESTDIR)$(INSTALL_BINDIR) $(DESTDIR)$(INSTALL_LIBDIR)/drivers \
	    $(DESTDIR)$(INSTALL_UNITDIR) $(DESTDIR)$(INSTALL_SYSUSERSDIR) $(DESTDIR)$(INSTALL_DOCDIR) \
	    $(DESTDIR)$(SYSCONFDIR)/tessera
	install -m 0755 $(addprefix $(O)/bin/,$(INSTALL_BINS)) $(DESTDIR)$(INSTALL_BINDIR)/
	install -m 0644 $(DRIVER_SOS) $(DESTDIR)$(INSTALL_LIBDIR)/drivers/
	$(INSTALL_SUBST) config/tessera-gateway.service > $(DESTDIR)$(INSTALL_UNITDIR)/tessera-gateway.service
	chmod 0644 $(DESTDIR)$(INSTALL_UNITDIR)/tessera-gateway.service
	install -m 0644 config/tessera.sysusers $(DESTDIR)$(INSTALL_SYSUSERSDIR)/tessera.conf
	$(INSTALL_SUBST) config/production/gateway.yaml > $(DESTDIR)$(SYSCONFDIR)/tessera/gateway.yaml.example
	chmod 0640 $(DESTDIR)$(SYSCONFDIR)/tessera/gateway.yaml.example
	install -m 0644 README.md docs/*.md $(DESTDIR)$(INSTALL_DOCDIR)/
# ---- end install --------------------------------------------------------------
# ---- container (Containerfile, docs/operations.md "Containers") ---------------
# `make container`: build/container/rootfs from this build, then
# `podman build -t tessera-gateway:$(TSR_VERSION) $(O)/container`.
.PHONY: container
container: all
	@scripts/container_rootfs.sh $(O) $(O)/container
	podman build -t tessera-gateway:$(TSR_VERSION) $(O)/container
# ---- end container ------------------------------------------------------------
