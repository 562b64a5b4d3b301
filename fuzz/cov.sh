#!/usr/bin/env bash
# Line coverage of the code each harness targets, as reached by its corpus:
#   fuzz/cov.sh BUILD_DIR NAME...
# BUILD_DIR holds the replay binaries of `make BUILD=fuzzcov` (clang
# source-based coverage, no sanitizers). For each NAME the committed corpus
# (fuzz/corpus/NAME/) and what `make fuzz` grew (build/fuzz/corpus/NAME/,
# when present) are replayed; the profile goes to BUILD_DIR/cov/NAME.profdata
# and one line per target file is printed (lines and functions covered),
# then one per function the harness is about (lines and branches covered):
# the code behind its first check. With FUZZ_COV_FUNCTIONS=1, every function
# of those files (llvm-cov report -show-functions). Exits non-zero if a
# replay failed.
set -uo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 2 ]] || { echo "usage: $0 BUILD_DIR NAME..." >&2; exit 2; }
B=$1
shift

# The files each harness is about (what its first check guards and what
# lies behind it).
declare -A SOURCES=(
  [spiffe]="ca/ca_spiffe.c"
  [x509_peer]="ca/ca_verify.c gateway/identity/gw_principal.c"
  [csr]="ca/ca_csr.c ca/ca_issue.c"
  [grpc_deframe]="grpc/grpc_frame.c"
  [protobuf]="policy/pol_policy.c"
  [config]="gateway/ops/gw_config.c"
  [policy]="policy/pol_policy.c"
  [pem_bundle]="ca/ca_pem.c ca/ca_key.c"
  [keyring]="gateway/store/gw_secretbox.c"
  [h2_session]="gateway/transport/gw_h2.c gateway/transport/gw_h2_idle_mem.c gateway/transport/gw_h2_pipe.c gateway/identity/gw_forward.c"
  [rpc]="gateway/rpc/gw_rpc_sandbox.c gateway/rpc/gw_rpc_cert.c gateway/rpc/gw_rpc_config.c gateway/rpc/gw_rpc_logs.c gateway/identity/gw_authz.c"
  [forward]="gateway/identity/gw_forward.c"
  [client]="client/cl_grpc.c client/cl_dial.c client/cl_proto.c supervisor/sup_gateway.c supervisor/sup_rotate.c supervisor/sup_workload.c"
  [docker]="drivers/docker/drv_docker.c"
  [qmp]="drivers/vm/drv_vm.c"
  [sup_logs]="supervisor/sup_logs.c"
  [cli]="cli/cli_main.c cli/cli_sandbox.c cli/cli_misc.c"
  [crl_number]="gateway/identity/gw_crl.c"
)

# The functions each harness is about (static ones by name too).
declare -A FUNCS=(
  [csr]="ca_csr_check csr_parse key_from_spki ec_key_from_point check_requested_identity sign_csr ca_issue_leaf copy_spki"
  [pem_bundle]="ca_certs_from_pem ca_cert_from_der ca_key_from_pem"
  [forward]="gw_forward_unescape gw_forward_parse_xfcc gw_forward_decode certs_of_escaped gw_forward_authenticate verify_forwarded"
  [h2_session]="forward call_admitted gw_forward_authenticate verify_forwarded"
  [client]="on_header on_data_chunk on_stream_close stream_status cl_resp_status cl_message_decode cl_stream_send cl_stream_finish sup_get_config sup_get_provider_env sup_report_policy sup_renewal_check sup_rotate_renew sup_env_build note_rejected"
  [docker]="dk_version_answer dk_api_parse dk_create_answer dk_state_of dk_fail_status dk_engine_message dk_printable"
  [qmp]="vm_qmp_line vm_qmp_exec vm_qmp_greeting"
  [sup_logs]="sup_linebuf_feed sup_linebuf_flush sup_logq_push sup_logq_take gather drop_oldest"
  [cli]="take_globals global_index apply_global cli_next setup cli_positional cmd_create env_add cert_revoke cli_cmd_logs"
  [crl_number]="gw_crl_number_parse read_number gw_crl_cache_new"
)

mkdir -p "$B/cov"
failed=0
printf '%-13s %-32s %9s %9s\n' harness 'file / function' lines 'functions / branches'
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
    awk -v n="$name" -v cwd="$PWD/" '$1 ~ /\.c$/ { f = $1; if (index(f, cwd) == 1) f = substr(f, length(cwd) + 1)
      printf "%-13s %-32s %9s %9s\n", n, f, $10, $7 }'
  # -show-functions columns: Name Regions Miss Cover Lines Miss Cover
  # Branches Miss Cover; a static function is "file.c:name".
  if [[ -n ${FUNCS[$name]:-} ]]; then
    llvm-cov report -show-functions "$bin" -instr-profile="$B/cov/$name.profdata" "${files[@]}" \
        2>/dev/null | awk -v n="$name" -v want="${FUNCS[$name]}" '
      BEGIN { k = split(want, w, " "); for (i = 1; i <= k; i++) f[w[i]] = 1 }
      { fn = $1; sub(/^.*:/, "", fn) }
      (fn in f) && !(fn in seen) { seen[fn] = 1
        printf "%-13s   %-30s %9s %9s\n", n, fn "()", $7, ($8 == "0" ? "-" : $10) }'
  fi
  if [[ ${FUZZ_COV_FUNCTIONS:-0} == 1 ]]; then
    llvm-cov report -show-functions "$bin" -instr-profile="$B/cov/$name.profdata" "${files[@]}"
  fi
done
exit $failed
