"""Is work queued behind a blocking host function held back? Raw cuda.bindings (no kit code
in the measured path): a blocking cuLaunchHostFunc, then a small and a large memset, a kernel
through cuda.core, an event record; query the stream and the event while the host function
still blocks, and read the output through a copy on a second stream. Prints one line per trial."""

from __future__ import annotations

import ctypes
import sys
import threading

import numpy as np
from cuda.bindings import driver as d
from cuda.core import Device


def check(res):
    if res[0] != d.CUresult.CUDA_SUCCESS:
        raise RuntimeError(res[0].name)
    return res[1:] if len(res) > 1 else None


def main(trials: int) -> int:
    dev = Device(0)
    dev.set_current()
    HOSTFN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
    gates = {}

    def body(ud):
        ent, gate = gates[int(ud or 0)]
        ent.set()
        gate.wait(20)

    cfn = HOSTFN(body)
    addr = ctypes.cast(cfn, ctypes.c_void_p).value
    bad = 0
    for t in range(trials):
        for n in (1000, 1 << 20):
            (s,) = check(d.cuStreamCreate(1))
            (side,) = check(d.cuStreamCreate(1))
            (buf,) = check(d.cuMemAlloc(4 * n))
            check(d.cuMemsetD32Async(buf, 0x7FC00000, n, s))  # NaN
            check(d.cuStreamSynchronize(s))
            ent, gate = threading.Event(), threading.Event()
            gates[t * 10 + (n > 1000) + 1] = (ent, gate)
            check(d.cuLaunchHostFunc(s, d.CUhostFn(addr), t * 10 + (n > 1000) + 1))
            check(d.cuMemsetD32Async(buf, 0x3F800000, n, s))  # 1.0
            (ev,) = check(d.cuEventCreate(0))
            check(d.cuEventRecord(ev, s))
            ent.wait(10)
            sq = d.cuStreamQuery(s)[0].name
            eq = d.cuEventQuery(ev)[0].name
            host = np.empty(n, np.float32)
            check(d.cuMemcpyDtoHAsync(host.ctypes.data, buf, 4 * n, side))
            check(d.cuStreamSynchronize(side))
            early = not np.isnan(host).all()
            gate.set()
            check(d.cuStreamSynchronize(s))
            ok = sq == "CUDA_ERROR_NOT_READY" and eq == "CUDA_ERROR_NOT_READY" and not early
            bad += not ok
            print(f"trial {t} n={n}: stream {sq}, event {eq}, output written early: {early} -> {'ok' if ok else 'WRONG'}")
            for h, f in ((buf, d.cuMemFree), (ev, d.cuEventDestroy), (s, d.cuStreamDestroy), (side, d.cuStreamDestroy)):
                check(f(h))
    print(f"raw driver: {bad} wrong of {2 * trials}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
