#!/usr/bin/env bash
# One call on the GPU machine: install offline, build the kernels, run the GPU tests with
# CUDART_KIT_REQUIRE_GPU=1, run the benchmarks, print a short summary last.
# Logs go to $OUT (the device tool brings them back). Stages: STAGES="install build test bench"
# (default all but sanitize); extra pytest args in PYTEST_ARGS, test paths in TESTS; benchmarks in
# BENCH ("vector matmul ..."), their extra args in BENCH_ARGS; STAGES+=" sanitize" runs
# compute-sanitizer memcheck/racecheck over tools/sanitize_gemm.py; "matrix" runs memcheck over
# the bad-input matrix test; "nvtx" checks with ncu that the kit's NVTX ranges select its kernels
# and measures their host cost; "stability" repeats bandwidth figures (tools/bench_stability.py);
# "strided_memcheck" runs memcheck over the view tests (every strided kernel); "epi_sanitize"
# memcheck and racecheck over the matmul epilogue tests; "diag" runs tools/diag_exit.sh; "ncu_gemm"
# profiles the Hopper BF16 kernel next to cuBLAS's at NCU_SHAPE (tools/profile_gemm.py).
set -uo pipefail
OUT=${OUT:-/tmp/cudart_kit_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
STAGES=${STAGES:-"install build test cli bench"}
BENCH=${BENCH:-"vector"}
PY=${PY:-python3}
summary=()
has() { [[ " $STAGES " == *" $1 "* ]]; }

{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true; } | tee "$OUT/gpu.txt"
$PY -c "import cuda.core, cuda.bindings, numpy; print('cuda.core', cuda.core.__version__, 'cuda.bindings', cuda.bindings.__version__, 'numpy', numpy.__version__)" | tee -a "$OUT/gpu.txt"
$PY -c "import ml_dtypes, numpy; numpy.dtype(ml_dtypes.bfloat16); print('ml_dtypes', ml_dtypes.__version__)" 2>&1 | tail -1 | tee -a "$OUT/gpu.txt"

if has install; then
  # built kernels carried compressed (carry is limited to 64 MiB; xz packs the fatbins ~8x):
  # tar -cJf .whl/artifacts.tar.xz -C cudart_kit _artifacts
  if [ -f .whl/artifacts.tar.xz ]; then
    rm -rf cudart_kit/_artifacts && tar -xJf .whl/artifacts.tar.xz -C cudart_kit && summary+=("artifacts: unpacked from .whl/artifacts.tar.xz")
  fi
  # optional extras carried as wheels (e.g. nvmath-python for algo="cublas"): run with carry=[".whl"]
  if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}" && summary+=("extras: $(ls .whl | tr '\n' ' ')")
  fi
  if $PY -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1; then
    summary+=("install: pip -e ok")
  else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    summary+=("install: pip -e FAILED (see install.log), using PYTHONPATH")
  fi
fi

if has build; then
  t0=$(date +%s)
  if $PY -m cudart_kit.build ${FORCE_BUILD:+--force} 2>&1 | tee "$OUT/build.log"; then
    summary+=("build: ok in $(( $(date +%s) - t0 )) s")
  else
    summary+=("build: FAILED (see build.log)")
  fi
fi

if has test; then
  # a hung kernel blocks inside a CUDA call where pytest-timeout cannot reach it: bound it from outside
  # PYTHONFAULTHANDLER: a crash (also one at interpreter exit) prints every thread's Python stack
  # TEST_SPLIT_K="expr": the tests matching -k expr run in a second pytest process after the rest
  # (new kernels that could hang: a hang then costs only their own results)
  gpu_tests() {  # name, extra args...
    local name=$1; shift
    CUDART_KIT_REQUIRE_GPU=1 PYTHONFAULTHANDLER=1 timeout -k 10 ${TEST_TIMEOUT:-900} $PY -m pytest ${TESTS:-tests/gpu} -q -rfEs -p no:cacheprovider ${PYTEST_ARGS:-} \
      "$@" --junitxml="$OUT/$name.xml" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    summary+=("$name (pytest exit $rc): $(grep -E '^(=+ )?[0-9]+ (passed|failed)|(passed|failed|error).* in [0-9.]+s' "$OUT/$name.log" | tail -1)")
    [ "$rc" -gt 1 ] && summary+=("pytest exit $rc: tail of the log: $(tail -c 1500 "$OUT/$name.log" | tr '\n' '|')")
  }
  if [ -n "${TEST_SPLIT_K:-}" ]; then
    gpu_tests gpu-tests -k "not (${TEST_SPLIT_K})"
    gpu_tests gpu-tests-split -k "${TEST_SPLIT_K}"
  else
    gpu_tests gpu-tests
  fi
fi

if has cli; then
  # real output of the command for docs/cli.md and the closing note
  for c in "devices" "query" "doctor" "bandwidth --size 256M --memory all" "devices --json" "bandwidth --shmoo --end 256M --htod --dtoh --memory pinned --csv"; do
    name=$(echo "$c" | tr ' ' '_' | tr -d '-' | cut -c1-40)
    { echo "\$ cudart-kit $c"; $PY -m cudart_kit $c; echo "(exit $?)"; } > "$OUT/cli_$name.txt" 2>&1
  done
  summary+=("cli: $(ls "$OUT"/cli_*.txt | wc -l) outputs saved")
fi

if has bench; then
  for b in $BENCH; do
    if [ -f "tools/bench_$b.py" ]; then
      extra=()
      [ "$b" = overlap ] && extra=(--trace "$OUT/overlap_trace.json" --plot "$OUT/overlap.png")
      timeout -k 10 ${BENCH_TIMEOUT:-600} $PY "tools/bench_$b.py" --json "$OUT/bench_$b.json" "${extra[@]}" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench_$b.txt"
    fi
  done
fi

if has sanitize; then
  # compute-sanitizer over small matmuls of every algorithm (tools/sanitize_gemm.py)
  # (SANITIZE_MEMCHECK_ARGS / SANITIZE_RACECHECK_ARGS: e.g. "--parts epilogue --algos bf16_sm90")
  for tool in memcheck racecheck; do
    targs=SANITIZE_${tool^^}_ARGS
    timeout -k 10 ${SANITIZE_TIMEOUT:-300} compute-sanitizer --tool $tool --report-api-errors no \
      $PY tools/sanitize_gemm.py ${!targs:-} > "$OUT/sanitize_$tool.log" 2>&1
    summary+=("sanitize $tool (exit $?): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitize_$tool.log" | tail -1)")
  done
fi

if has diag; then
  # the exit-time crash and the capture-under-memcheck failure (tools/diag_exit.sh)
  timeout -k 10 ${DIAG_TIMEOUT:-240} bash tools/diag_exit.sh > "$OUT/diag.log" 2>&1
  summary+=("diag (exit $?): $(grep -E '^RESULT' "$OUT/diag.log" | tr '\n' '|')")
fi

if has matrix; then
  CUDART_KIT_REQUIRE_GPU=1 timeout -k 10 ${MATRIX_TIMEOUT:-420} compute-sanitizer --tool memcheck --report-api-errors no \
    $PY -m pytest tests/gpu/test_bad_inputs.py -q -p no:cacheprovider > "$OUT/sanitize_matrix.log" 2>&1
  summary+=("memcheck over the bad-input matrix (exit $?): $(grep -E '[0-9]+ (passed|failed)' "$OUT/sanitize_matrix.log" | tail -1) / $(grep -E 'ERROR SUMMARY' "$OUT/sanitize_matrix.log" | tail -1)")
fi

if has strided_memcheck; then
  # compute-sanitizer memcheck over the strided kernels (views through every op, copy and fill)
  CUDART_KIT_REQUIRE_GPU=1 timeout -k 10 ${MATRIX_TIMEOUT:-420} compute-sanitizer --tool memcheck --report-api-errors no \
    $PY -m pytest tests/gpu/test_views.py -q -p no:cacheprovider > "$OUT/sanitize_views.log" 2>&1
  summary+=("memcheck over the view tests (exit $?): $(grep -E '[0-9]+ (passed|failed)' "$OUT/sanitize_views.log" | tail -1) / $(grep -E 'ERROR SUMMARY' "$OUT/sanitize_views.log" | tail -1)")
fi

if has epi_sanitize; then
  # memcheck over the epilogue tests (every kernel's bias / activation paths, the staged bias in
  # shared memory included); racecheck over the SIMT and Hopper ones (the staging barriers)
  CUDART_KIT_REQUIRE_GPU=1 timeout -k 10 ${MATRIX_TIMEOUT:-420} compute-sanitizer --tool memcheck --report-api-errors no \
    $PY -m pytest tests/gpu/test_gemm_epilogue.py -q -p no:cacheprovider -k "${EPI_K:-not cublas}" > "$OUT/sanitize_epi_memcheck.log" 2>&1
  summary+=("memcheck over the epilogue tests (exit $?): $(grep -E '[0-9]+ (passed|failed)' "$OUT/sanitize_epi_memcheck.log" | tail -1) / $(grep -E 'ERROR SUMMARY' "$OUT/sanitize_epi_memcheck.log" | tail -1)")
  CUDART_KIT_REQUIRE_GPU=1 timeout -k 10 ${MATRIX_TIMEOUT:-420} compute-sanitizer --tool racecheck --report-api-errors no \
    $PY -m pytest tests/gpu/test_gemm_epilogue.py -q -p no:cacheprovider -k "${EPI_RACE_K:-matches_numpy and (simt or sm90) and not 4097}" > "$OUT/sanitize_epi_racecheck.log" 2>&1
  summary+=("racecheck over the SIMT / Hopper epilogue tests (exit $?): $(grep -E '[0-9]+ (passed|failed)' "$OUT/sanitize_epi_racecheck.log" | tail -1) / $(grep -E 'RACECHECK SUMMARY' "$OUT/sanitize_epi_racecheck.log" | tail -1)")
fi

if has nvtx; then
  for r in add mul; do
    timeout -k 10 300 ncu --nvtx --nvtx-include "cudart_kit@ops.$r/" --clock-control none \
      --metrics gpu__time_duration.sum $PY tools/check_nvtx.py work > "$OUT/nvtx_$r.log" 2>&1
    ks=$(grep -oE '^  [A-Za-z_][A-Za-z0-9_]* \(' "$OUT/nvtx_$r.log" | tr -d ' (' | sort | uniq -c | tr '\n' ' ')
    summary+=("ncu --nvtx-include cudart_kit@ops.$r/ (exit $?): profiled kernels: ${ks:-none}")
  done
  # the overlap experiment's stages: only the kernels inside overlap:kernel ranges are profiled
  CUDART_KIT_NVTX=1 timeout -k 10 300 ncu --nvtx --nvtx-include "cudart_kit@overlap:kernel/" --clock-control none \
    --metrics gpu__time_duration.sum $PY -m cudart_kit overlap --streams 2 --chunks 4 --size-mib 8 --iters 16 \
    --order depth --repeat 1 --no-gate > "$OUT/nvtx_overlap.log" 2>&1
  ks=$(grep -oE '^  [A-Za-z_][A-Za-z0-9_]* \(' "$OUT/nvtx_overlap.log" | tr -d ' (' | sort | uniq -c | tr '\n' ' ')
  summary+=("ncu --nvtx-include cudart_kit@overlap:kernel/ (exit $?): profiled kernels: ${ks:-none}")
  $PY tools/check_nvtx.py cost > "$OUT/nvtx_cost.json" 2>&1
  summary+=("nvtx host cost: $(tail -1 "$OUT/nvtx_cost.json")")
fi

if has ncu_gemm; then
  # Nsight Compute on the Hopper BF16 kernels (one tile per CTA, persistent) and cuBLAS's at each
  # shape of NCU_SHAPE (default the short-K 4096x4096x256 where the kit runs 0.70x, and 4096^3):
  # throughput, occupancy, launch, warp stalls, memory, scheduler, tail; NCU_ALGOS: which
  for shape in ${NCU_SHAPE:-4096x4096x256 4096x4096x4096}; do
    timeout -k 10 ${NCU_TIMEOUT:-200} ncu --clock-control none -k "regex:gemm|nvjet|xmma|cutlass" \
      --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
      --section MemoryWorkloadAnalysis --section SchedulerStats --section ComputeWorkloadAnalysis \
      --section SourceCounters \
      $PY tools/profile_gemm.py ${NCU_ALGOS:-bf16_sm90 bf16_sm90_p torch_bf16} --shape "$shape" > "$OUT/ncu_gemm_$shape.txt" 2>&1
    summary+=("ncu over bf16_sm90 and cuBLAS at $shape (exit $?): $(grep -c 'Duration' "$OUT/ncu_gemm_$shape.txt") kernels profiled")
  done
fi

if has stability; then
  timeout -k 10 ${STABILITY_TIMEOUT:-400} $PY tools/bench_stability.py --out "$OUT/stability.json" ${STABILITY_ARGS:-} 2>&1 | tee "$OUT/stability.txt"
fi

echo
echo "================ summary ================"
cat "$OUT/gpu.txt"
printf '%s\n' "${summary[@]}"
[ -f "$OUT/stability.txt" ] && tail -25 "$OUT/stability.txt"
for b in $BENCH; do
  [ -f "$OUT/bench_$b.txt" ] && sed -n '/^vector ops\|^matmul\|^launch\|^overlap\|^views/,$p' "$OUT/bench_$b.txt"
done

# the device tool brings back at most 8 files: keep the summary and one archive of everything
{ echo "================ summary ================"; cat "$OUT/gpu.txt"; printf '%s\n' "${summary[@]}"; } > "$OUT/summary.txt"
tar -C "$OUT" -czf /tmp/cudart_kit_logs.tgz --exclude=summary.txt . && \
  find "$OUT" -mindepth 1 ! -name summary.txt ! -name '*.png' -delete && mv /tmp/cudart_kit_logs.tgz "$OUT/logs.tgz"
