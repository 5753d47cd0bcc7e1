"""Diagnostic: tests/gpu/test_interop.py::test_stream_order_torch_kit_torch alone dies with SIGSEGV
at interpreter exit on the H200 (2026-12-04). Variant (argv[1]) of its pattern, run one per process:
  op      torch stream + ops.scale on raw tensors with stream=ts (the test)
  adopt   ck.as_stream(ts) only
  kitstr  ops.scale on raw tensors with a kit Stream
  clear   as "op", then the kit's caches of foreign objects cleared before exit
  fixture as "op" inside the GPU tests' fixture: a kit Stream created first, synced and closed after
  fixture_open  as "fixture" without the close
  exact   the test's body with its fixtures' objects, PyTorch imported first (exited cleanly)
  kitfirst  as "exact", but the kit initialises CUDA before PyTorch is imported, as under pytest
            (the conftest's report header calls ck.get_device(0) before any test imports torch)
            (both exited cleanly on the H200, as did pytest with PyTorch imported first: crashed)
  exactdel  as "exact", then the test's locals dropped and collected before exit, as under pytest
"""
import sys

import numpy as np

v = sys.argv[1]
if v == "kitfirst":
    import cudart_kit as ck

    ck.get_device(0)
    v = "exact"

import torch  # noqa: E402

import cudart_kit as ck  # noqa: E402
from cudart_kit import ops  # noqa: E402

dropall = v == "exactdel"
if dropall:
    v = "exact"
if v == "exact":  # the test's body, with its fixtures' objects
    rng = np.random.default_rng(1)
    kstream = ck.Stream.create(ck.get_device(0))
    n = 1 << 22
    x = torch.from_numpy(rng.standard_normal(n).astype(np.float32)).cuda()
    ts = torch.cuda.Stream()
    with torch.cuda.stream(ts):
        y = x * 3.0 + 1.0
        out = torch.empty_like(y)
        ops.scale(2.0, y, out, stream=ts)
        z = out.sum()
    ts.synchronize()
    ref = (2.0 * (x.double() * 3.0 + 1.0)).sum().item()
    print("exact", abs(z.item() - ref) <= 1e-4 * abs(ref) + 1e-2)
    if dropall:  # as under pytest: the test's locals die before the interpreter exits
        import gc

        del x, ts, y, out, z
        gc.collect()
    kstream.sync()
    kstream.close()
    sys.exit(0)
ks = ck.Stream.create(0) if v.startswith("fixture") else None
x = torch.from_numpy(np.ones(1 << 20, np.float32)).cuda()
ts = torch.cuda.Stream()
with torch.cuda.stream(ts):
    y = x * 3.0
    out = torch.empty_like(y)
    if v in ("op", "clear") or v.startswith("fixture"):
        ops.scale(2.0, y, out, stream=ts)
    elif v == "adopt":
        ck.as_stream(ts)
    elif v == "kitstr":
        s = ck.Stream.create(0)
        ops.scale(2.0, y, out, stream=s)
        s.sync()
ts.synchronize()
if v == "clear":
    from cudart_kit import stream as kst
    from cudart_kit.ops import vector

    kst._adopted.clear()
    vector._tplans.clear()
if ks is not None:
    ks.sync()
    if v == "fixture":
        ks.close()
print(v, "done", float(out.sum()))
