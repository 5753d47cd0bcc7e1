"""Corrupt and foreign images on a real driver: each a typed error, the process alive, the kit
usable afterwards (a truncated cubin used to SIGSEGV inside module loading)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import cudart_kit as ck
from cudart_kit import build, ops

KERNEL = 'extern "C" __global__ void twice(float* x, int n) { int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) x[i] *= 2.0f; }\n'


def _kit_still_works(stream, rng):
    x = rng.uniform(-1, 1, 1001).astype(np.float32)
    y = rng.uniform(-1, 1, 1001).astype(np.float32)
    out = ops.add(ck.to_device(x, stream=stream), ck.to_device(y, stream=stream), stream=stream)
    np.testing.assert_allclose(out.to_numpy(stream=stream), x.astype(np.float64) + y, rtol=1e-6)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    nvcc = build.find_nvcc()
    if nvcc is None:
        pytest.skip("nvcc is needed to make the test images")
    d = tmp_path_factory.mktemp("img")
    (d / "k.cu").write_text(KERNEL)
    out = {}
    for name, flags in {"cubin_sm90": ["--cubin", "-arch=sm_90"], "cubin_sm80": ["--cubin", "-arch=sm_80"],
                        "fatbin": ["--fatbin", "-gencode=arch=compute_90,code=sm_90"]}.items():
        subprocess.run([nvcc, *flags, str(d / "k.cu"), "-o", str(d / name)], check=True, capture_output=True)
        out[name] = (d / name).read_bytes()
    out["vector"] = build.ensure("vector").read_bytes()
    return out


def _cases(images):
    rng = np.random.default_rng(1)
    return {
        "empty": b"",
        "random": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "cubin_half": images["cubin_sm90"][: len(images["cubin_sm90"]) // 2],
        "cubin_header_only": images["cubin_sm90"][:64],
        "fatbin_half": images["fatbin"][: len(images["fatbin"]) // 2],
        "kit_fatbin_truncated": images["vector"][: len(images["vector"]) - 1000],
        "ptx_binary": b".version 9.0\n.target sm_90\n\x00\x01\x02",
    }


CASES = ["empty", "random", "cubin_half", "cubin_header_only", "fatbin_half", "kit_fatbin_truncated", "ptx_binary"]


@pytest.mark.parametrize("case", CASES)
def test_corrupt_image_is_a_typed_error(images, stream, rng, case):
    data = _cases(images)[case]
    with pytest.raises((ck.InvalidImageError, ValueError)) as info:
        ck.Module.load(data)
    assert isinstance(info.value, ck.CudaKitError), repr(info.value)
    _kit_still_works(stream, rng)


def test_corrupt_image_in_a_subprocess_does_not_crash(images, tmp_path):
    """The original crash, reproduced where a SIGSEGV could not take the test run with it."""
    p = tmp_path / "half.cubin"
    p.write_bytes(images["cubin_sm90"][: len(images["cubin_sm90"]) * 2 // 3])
    code = (f"import cudart_kit as ck\ntry:\n    ck.Module.load({str(p)!r})\nexcept ck.InvalidImageError as e:\n"
            f"    print('typed', e)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.startswith("typed"), (run.returncode, run.stdout, run.stderr[-2000:])


def test_wrong_architecture(images, device, stream, rng):
    cc = device.compute_capability
    if cc[0] == 8:
        pytest.skip("needs a device that cannot run an sm_80 cubin")
    with pytest.raises(ck.DeviceCapabilityError, match="sm_80"):
        ck.Module.load(images["cubin_sm80"], device=device)
    mod = ck.Module.load(images["cubin_sm80"])  # no device named: the driver refuses at lookup
    with pytest.raises(ck.CudaKitError) as info:
        mod.kernel("twice")
    assert "NO_BINARY_FOR_GPU" in str(info.value) or "twice" in str(info.value)
    _kit_still_works(stream, rng)


def test_good_images_still_load_and_run(images, device, stream, rng):
    for name in ("cubin_sm90", "fatbin"):
        if name == "cubin_sm90" and device.compute_capability != (9, 0):
            continue
        k = ck.Module.load(images[name], device=device).kernel("twice")
        x = rng.uniform(-1, 1, 777).astype(np.float32)
        dx = ck.to_device(x, stream=stream)
        ck.launch(k, ck.blocks_for(777, 128), 128, dx, np.int32(777), stream=stream)
        np.testing.assert_allclose(dx.to_numpy(stream=stream), 2.0 * x.astype(np.float64), rtol=1e-7)
