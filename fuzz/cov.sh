#!/usr/bin/env bash
# Line coverage of the code each harness targets, as reached by its corpus:
#   fuzz/cov.sh BUILD_DIR NAME...
# BUILD_DIR holds the replay binaries of `make BUILD=fuzzcov` (clang
# source-based coverage, no sanitizers). For each NAME the committed corpus
# (fuzz/corpus/NAME/) and what `make fuzz` grew (build/fuzz/corpus/NAME/,
# when present) are replayed; the profile goes to BUILD_DIR/cov/NAME.profdata
# and one line per target file is printed: lines and functions covered.
# With FUZZ_COV_FUNCTIONS=1, every function of those files too (llvm-cov
# report -show-functions). Exits non-zero if a replay failed.
set -uo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 2 ]] || { echo "usage: $0 BUILD_DIR NAME..." >&2; exit 2; }
B=$1
shift

# The files each harness is about (what its first check guards and what
# lies behind it).
declare -A SOURCES=(
  [spiffe]="ca/ca_spiffe.c"
  [x509_peer]="ca/ca_verify.c gateway/gw_principal.c"
  [csr]="ca/ca_csr.c ca/ca_issue.c"
  [grpc_deframe]="gateway/gw_grpc.c"
  [protobuf]="gateway/gw_policy.c"
  [config]="gateway/gw_config.c"
  [policy]="gateway/gw_policy.c"
  [pem_bundle]="ca/ca_pem.c ca/ca_key.c"
  [keyring]="gateway/gw_secretbox.c"
  [h2_session]="gateway/gw_h2.c gateway/gw_forward.c"
  [rpc]="gateway/gw_rpc_sandbox.c gateway/gw_rpc_cert.c gateway/gw_rpc_config.c gateway/gw_rpc_logs.c gateway/gw_authz.c"
  [forward]="gateway/gw_forward.c"
  [client]="client/cl_grpc.c client/cl_proto.c supervisor/sup_gateway.c supervisor/sup_rotate.c supervisor/sup_workload.c"
  [docker]="drivers/docker/drv_docker.c"
  [qmp]="drivers/vm/drv_vm.c"
  [sup_logs]="supervisor/sup_logs.c"
  [cli]="cli/cli_main.c cli/cli_sandbox.c cli/cli_misc.c"
  [crl_number]="gateway/gw_crl.c"
)

mkdir -p "$B/cov"
failed=0
printf '%-13s %-32s %9s %9s\n' harness file lines functions
for name in "$@"; do
  bin="$B/tests/fuzzreplay_$name"
  dirs=("fuzz/corpus/$name")
  [[ -d build/fuzz/corpus/$name ]] && dirs+=("build/fuzz/corpus/$name")
  rm -f "$B/cov/$name".*.profraw
  if ! TSR_FUZZ_MEM_DRIVER="$B/tests/drivers/mem.so" LLVM_PROFILE_FILE="$B/cov/$name.%p.profraw" \
       "$bin" "${dirs[@]}" >"$B/cov/$name.log" 2>&1; then
    echo "FAIL $name: replay failed (see $B/cov/$name.log)"
    failed=1
    continue
  fi
  llvm-profdata merge -sparse "$B/cov/$name".*.profraw -o "$B/cov/$name.profdata"
  rm -f "$B/cov/$name".*.profraw
  read -r -a files <<<"${SOURCES[$name]:-}"
  [[ ${#files[@]} -gt 0 ]] || { echo "$name: no target files listed in $0"; continue; }
  # llvm-cov report columns: Filename Regions Missed Cover Functions Missed
  # Executed Lines Missed Cover Branches Missed Cover.
  llvm-cov report "$bin" -instr-profile="$B/cov/$name.profdata" "${files[@]}" 2>/dev/null |
    awk -v n="$name" '$1 ~ /\.c$/ { printf "%-13s %-32s %9s %9s\n", n, $1, $10, $7 }'
  if [[ ${FUZZ_COV_FUNCTIONS:-0} == 1 ]]; then
    llvm-cov report -show-functions "$bin" -instr-profile="$B/cov/$name.profdata" "${files[@]}"
  fi
done
exit $failed
