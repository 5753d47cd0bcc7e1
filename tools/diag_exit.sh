#!/usr/bin/env bash
# Diagnostics for two failures seen on the H200 (2026-12-04), run by tools/device_run.sh's "diag"
# stage: (1) pytest over tests/gpu dies with SIGSEGV at interpreter exit, after its summary
# ("<no Python frame>"), when the nccl4py extra is installed (a run without it exited cleanly);
# (2) under compute-sanitizer memcheck an sm90 matmul inside a graph capture fails allocating its
# workspace (tools/diag_capture_side.py). One "RESULT name rc=N" line per experiment.
PY=${PY:-python3}
run() {
  local name=$1; shift
  CUDART_KIT_REQUIRE_GPU=1 PYTHONFAULTHANDLER=1 timeout -k 5 ${RUN_TIMEOUT:-120} "$@" > "/tmp/diag_$name.log" 2>&1
  local rc=$?
  echo "RESULT $name rc=$rc"
  tail -${TAIL:-6} "/tmp/diag_$name.log"
}
# DIAG_PARTS: which experiments (default all but crash): nccl interop capture crash
part() { [[ " ${DIAG_PARTS:-nccl interop capture} " == *" $1 "* ]]; }
if part nccl; then
run import_nccl $PY -c "import nccl.core"
run nccl_and_context $PY -c "import nccl.core, cuda.core; cuda.core.Device(0).set_current()"
run collectives $PY -m pytest tests/gpu/test_collectives.py -q -p no:cacheprovider
if [ -f /tmp/diag_collectives.log ] && tail -3 /tmp/diag_collectives.log | grep -q "Segmentation\|Fatal Python"; then
  # one process per test: which test leaves something that crashes at exit
  i=0
  for t in $($PY -m pytest tests/gpu/test_collectives.py -q --collect-only -p no:cacheprovider 2>/dev/null | grep "::"); do
    i=$((i + 1)); echo "test $i: $t"
    TAIL=0 RUN_TIMEOUT=60 run "one_$i" $PY -m pytest "$t" -q -p no:cacheprovider
  done
  if command -v gdb >/dev/null; then
    gdb -batch -ex run -ex bt --args $PY -m pytest tests/gpu/test_collectives.py -q -p no:cacheprovider 2>&1 | tail -40
  else
    echo "no gdb on this machine"
  fi
fi
fi
if part interop; then
run interop $PY -m pytest tests/gpu/test_interop.py -q -p no:cacheprovider
if [ -n "${INTEROP_QUICK:-}" ]; then
  # the short form: the JAX / numba test alone, then the file without the nvtx wheel, without any extra
  TAIL=3 run interop_jax_numba_only $PY -m pytest tests/gpu/test_interop.py -q -p no:cacheprovider -k numba_and_jax
  rm -rf /tmp/site_no_nvtx && mkdir -p /tmp/site_no_nvtx && (cd /tmp/site && for f in *; do case "$f" in nvtx*) ;; *) ln -s "/tmp/site/$f" "/tmp/site_no_nvtx/$f";; esac; done)
  TAIL=3 PYTHONPATH="/tmp/site_no_nvtx:$PWD" run interop_without_nvtx $PY -m pytest tests/gpu/test_interop.py -q -p no:cacheprovider
  TAIL=3 PYTHONPATH="$PWD" run interop_no_extras $PY -m pytest tests/gpu/test_interop.py -q -p no:cacheprovider
  # the one test that crashes alone, and its body as a script in both import orders
  TAIL=2 run stream_order_test $PY -m pytest tests/gpu/test_interop.py::test_stream_order_torch_kit_torch -q -p no:cacheprovider
  TAIL=2 run script_torch_first $PY tools/diag_torch_exit.py exact
  TAIL=2 run script_kit_first $PY tools/diag_torch_exit.py kitfirst
  # the same test under pytest, PyTorch imported before pytest (and so before the kit's header)
  TAIL=2 run pytest_torch_first $PY -c "import torch, sys, pytest; sys.exit(pytest.main(['tests/gpu/test_interop.py::test_stream_order_torch_kit_torch', '-q', '-p', 'no:cacheprovider']))"
  # a native backtrace of the crash
  if command -v gdb >/dev/null; then
    TAIL=60 run gdb_stream_order gdb -batch -ex run -ex bt -ex "info threads" -ex "thread apply all bt 8" --args $PY -m pytest tests/gpu/test_interop.py::test_stream_order_torch_kit_torch -q -p no:cacheprovider
  else
    echo "no gdb on this machine"
  fi
elif tail -3 /tmp/diag_interop.log | grep -q "Segmentation\|Fatal Python"; then
  # 2026-12-04: test_interop.py alone crashes at exit with every extra installed. Which test, and
  # does it need the nvtx / nccl4py / nvmath wheels on the path (/tmp/site)?
  i=0
  for t in $($PY -m pytest tests/gpu/test_interop.py -q --collect-only -p no:cacheprovider 2>/dev/null | grep "::"); do
    i=$((i + 1)); echo "interop test $i: $t"
    TAIL=0 RUN_TIMEOUT=90 run "interop_$i" $PY -m pytest "$t" -q -p no:cacheprovider
  done
  for w in nvtx nccl nvmath; do
    rm -rf /tmp/site_no_$w && mkdir -p /tmp/site_no_$w && (cd /tmp/site && for f in *; do case "$f" in $w*) ;; *) ln -s "/tmp/site/$f" "/tmp/site_no_$w/$f";; esac; done)
    TAIL=2 PYTHONPATH="/tmp/site_no_$w:$PWD" run "interop_without_$w" $PY -m pytest tests/gpu/test_interop.py -q -p no:cacheprovider
  done
  TAIL=2 PYTHONPATH="$PWD" run "interop_no_extras" $PY -m pytest tests/gpu/test_interop.py -q -p no:cacheprovider
  if command -v gdb >/dev/null; then
    gdb -batch -ex run -ex bt --args $PY -m pytest tests/gpu/test_interop.py -q -p no:cacheprovider 2>&1 | tail -40
  else
    echo "no gdb on this machine"
  fi
fi
fi
if [[ " ${DIAG_PARTS:-} " == *" crash "* ]]; then
  # the exit crash of test_stream_order_torch_kit_torch: a native stack (no gdb on the device:
  # an LD_PRELOAD SIGSEGV handler, tools/segv_backtrace.c), and which kit state it needs
  T=tests/gpu/test_interop.py::test_stream_order_torch_kit_torch
  if gcc -shared -fPIC -O0 -o /tmp/segv_bt.so tools/segv_backtrace.c -ldl; then
    TAIL=70 LD_PRELOAD=/tmp/segv_bt.so run native_stack $PY -m pytest $T -q -p no:cacheprovider -p no:faulthandler
  else
    echo "no C compiler: no native stack"
  fi
  TAIL=2 run script_exactdel $PY tools/diag_torch_exit.py exactdel
  TAIL=2 run pytest_no_capture $PY -m pytest $T -q -s -p no:cacheprovider
  TAIL=2 run pytest_clear_adopted $PY -c "import atexit, sys, pytest; from cudart_kit import stream as st; atexit.register(st._adopted.clear); sys.exit(pytest.main(['$T', '-q', '-p', 'no:cacheprovider']))"
  TAIL=2 run pytest_clear_tplans $PY -c "import atexit, sys, pytest; from cudart_kit.ops import vector as v; atexit.register(v._tplans.clear); sys.exit(pytest.main(['$T', '-q', '-p', 'no:cacheprovider']))"
  # the pattern as a test file outside the repository (no conftest: no report header, no fixtures),
  # then with the repository's conftest copied next to it
  mkdir -p /tmp/diag_min /tmp/diag_min_conf
  cat > /tmp/diag_min/test_min.py <<'PYEOF'
import torch

import cudart_kit as ck  # noqa: F401
from cudart_kit import ops


def test_min():
    x = torch.ones(1 << 20, device="cuda")
    ts = torch.cuda.Stream()
    with torch.cuda.stream(ts):
        y = x * 3.0
        out = torch.empty_like(y)
        ops.scale(2.0, y, out, stream=ts)
        z = out.sum()
    ts.synchronize()
    assert z.item() == 6.0 * (1 << 20)
PYEOF
  cp /tmp/diag_min/test_min.py /tmp/diag_min_conf/ && cp tests/conftest.py /tmp/diag_min_conf/conftest.py
  TAIL=2 run pytest_minimal $PY -m pytest /tmp/diag_min/test_min.py -q -p no:cacheprovider --rootdir /tmp/diag_min
  TAIL=2 run pytest_minimal_conftest $PY -m pytest /tmp/diag_min_conf/test_min.py -q -p no:cacheprovider --rootdir /tmp/diag_min_conf
  TAIL=2 run pytest_clear_both $PY -c "import atexit, sys, pytest; from cudart_kit import stream as st; from cudart_kit.ops import vector as v; atexit.register(st._adopted.clear); atexit.register(v._tplans.clear); sys.exit(pytest.main(['$T', '-q', '-p', 'no:cacheprovider']))"
fi
if part capture; then
run capture_plain $PY tools/diag_capture_side.py
TAIL=40 run capture_memcheck compute-sanitizer --tool memcheck --report-api-errors no $PY tools/diag_capture_side.py
fi
