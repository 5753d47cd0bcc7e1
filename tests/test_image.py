"""CPU tests of cudart_kit.image on real nvcc output: validation, arch parsing, kernel names."""

from __future__ import annotations

import random
import struct
import subprocess
from pathlib import Path

import pytest

import cudart_kit as ck
from cudart_kit import build, image
from cudart_kit.errors import DeviceCapabilityError, InvalidImageError
from cudart_kit.image import Entry, ImageInfo, UnsupportedImageError

NVCC = build.find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found")

SOURCE = r"""
extern "C" __global__ void add_one(float* x, int n) { int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) x[i] += 1.f; }
extern "C" __global__ void twice(int* x) { x[0] = helper_twice(x[0]); }
template <typename T> __global__ void scale(T* x, T a, int n) { int i = threadIdx.x; if (i < n) x[i] *= a; }
template __global__ void scale<float>(float*, float, int);
"""
# A __noinline__ device function must not be listed as a kernel.
PRELUDE = "__device__ __noinline__ int helper_twice(int v) { return 2 * v + (v >> 3); }\n"
KERNELS = ["_Z5scaleIfEvPT_S0_i", "add_one", "twice"]
HAS_ZSTD = True
try:
    from compression import zstd  # noqa: F401  (Python >= 3.14)
except ImportError:
    HAS_ZSTD = False


def _nvcc(tmp: Path, out: str, *flags: str) -> bytes:
    src = tmp / "k.cu"
    if not src.exists():
        src.write_text(PRELUDE + SOURCE)
    dest = tmp / out
    proc = subprocess.run([NVCC, *flags, str(src), "-o", str(dest)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return dest.read_bytes()


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    if NVCC is None:
        pytest.skip("nvcc not found")
    tmp = tmp_path_factory.mktemp("img")
    g = ["-gencode=arch=compute_80,code=sm_80", "-gencode=arch=compute_90a,code=sm_90a",
         "-gencode=arch=compute_80,code=compute_80"]
    return {
        "cubin": _nvcc(tmp, "k.cubin", "-cubin", "-arch=sm_80"),
        "ptx": _nvcc(tmp, "k.ptx", "-ptx", "-arch=compute_80"),
        "fatbin": _nvcc(tmp, "k.fatbin", "--fatbin", *g),                    # nvcc default: PTX zstd
        "fatbin_raw": _nvcc(tmp, "raw.fatbin", "--fatbin", "-no-compress", *g),
        "fatbin_lz4": _nvcc(tmp, "lz4.fatbin", "--fatbin", "--compress-mode=speed", "-Xfatbin=-compress-all", *g),
        "ptx_only": _nvcc(tmp, "p.fatbin", "--fatbin", "-gencode=arch=compute_80,code=compute_80"),
        "ptx_only_raw": _nvcc(tmp, "pr.fatbin", "--fatbin", "-no-compress", "-gencode=arch=compute_80,code=compute_80"),
    }


def _entries(fatbin: bytes):
    """(offset, header size, payload size, flags) of each entry, read independently of image.py."""
    _, _, hsize, fsize = struct.unpack_from("<IHHQ", fatbin, 0)
    off, out = hsize, []
    while off < hsize + fsize:
        _, _, ehs, psz = struct.unpack_from("<HHIQ", fatbin, off)
        out.append((off, ehs, psz, struct.unpack_from("<Q", fatbin, off + 40)[0]))
        off += ehs + psz
    return out


def _raises(data, kind=None) -> str:
    with pytest.raises(InvalidImageError) as info:
        image.validate(data, kind)
    return str(info.value)


# ---------------------------------------------------------------- not images at all

def test_empty_image():
    assert "empty" in _raises(b"")
    for kind in ("cubin", "ptx", "fatbin"):
        assert _raises(b"", kind) == f"the {kind} is empty (0 bytes)"
    assert issubclass(InvalidImageError, ValueError) and issubclass(InvalidImageError, ck.CudaKitError)


@pytest.mark.parametrize("n", [1, 3, 4, 15, 16, 63, 64, 100, 1000, 4096, 65536])
def test_random_bytes(n):
    rng = random.Random(1234 + n)
    data = bytes(rng.randrange(256) for _ in range(n))
    assert "not a cubin, PTX or fatbin" in _raises(data)
    # the same bytes behind a valid magic must still be refused, never crash the parser
    assert _raises(b"\x7fELF" + data, "cubin").startswith("cubin")
    assert _raises(struct.pack("<I", 0xBA55ED50) + data, "fatbin").startswith(("fatbin", "not a fatbin"))


def test_mutated_real_images_only_raise_invalid_image(art):
    rng = random.Random(7)
    for key in ("cubin", "fatbin_raw", "fatbin_lz4"):
        good = art[key]
        for _ in range(300):
            data = bytearray(good)
            pos = rng.randrange(200) if rng.random() < 0.5 else rng.randrange(len(data))
            data[pos] = rng.randrange(256)
            try:
                image.validate(bytes(data))
                image.kernel_names(bytes(data))
            except (InvalidImageError, UnsupportedImageError):
                pass


# ---------------------------------------------------------------- cubin

def test_cubin_truncation_sweep(art):
    cubin = art["cubin"]
    shoff, = struct.unpack_from("<Q", cubin, 40)
    shnum, = struct.unpack_from("<H", cubin, 60)
    assert image.validate(cubin).kind == "cubin"
    cuts = sorted({int(len(cubin) * k / 50) for k in range(50)} | {1, 63, 64, len(cubin) - 1})
    for cut in cuts:
        msg = _raises(cubin[:cut], "cubin")
        if cut >= 64:
            assert msg.startswith("cubin truncated: "), (cut, msg)
            assert msg.endswith(f"but the image has {cut} bytes"), (cut, msg)
    cut = shoff + 64
    assert _raises(cubin[:cut]) == (f"cubin truncated: section header table ends at byte {shoff + shnum * 64} "
                                    f"but the image has {cut} bytes")
    assert _raises(cubin[:40]) == "cubin truncated: the ELF header needs 64 bytes but the image has 40 bytes"


def test_cubin_section_past_end(art):
    cubin = bytearray(art["cubin"])
    shoff, = struct.unpack_from("<Q", cubin, 40)
    shnum, = struct.unpack_from("<H", cubin, 60)
    struct.pack_into("<Q", cubin, shoff + 2 * 64 + 24, len(cubin) - 10)  # section 2's sh_offset
    size, = struct.unpack_from("<Q", cubin, shoff + 2 * 64 + 32)
    assert _raises(bytes(cubin)) == (f"cubin truncated: section 2 ends at byte {len(cubin) - 10 + size} "
                                     f"but the image has {len(cubin)} bytes")
    cubin = bytearray(art["cubin"])
    struct.pack_into("<H", cubin, 62, 999)  # e_shstrndx
    assert _raises(bytes(cubin)) == f"cubin: section name string table index 999 is not a string table (of {shnum} sections)"


def test_elf_that_is_not_cuda(art):
    cubin = bytearray(art["cubin"])
    struct.pack_into("<H", cubin, 18, 62)
    assert _raises(bytes(cubin)) == "cubin: ELF e_machine is 62, not EM_CUDA (190): not a CUDA ELF"
    host = Path("/bin/sh").read_bytes()  # a host executable is an ELF of another machine
    assert "not EM_CUDA (190)" in _raises(host)
    cubin = bytearray(art["cubin"])
    cubin[4] = 1
    assert "ELFCLASS64" in _raises(bytes(cubin))


def test_kind_mismatch(art):
    assert _raises(art["fatbin_raw"], "cubin") == ("expected a cubin, but the image is a fatbin (by its magic bytes); "
                                                    "pass kind='fatbin' or rename the file")
    assert "not an ELF image" in _raises(art["ptx"], "cubin")


@needs_nvcc
@pytest.mark.parametrize("target, arch", [("sm_80", "sm_80"), ("sm_86", "sm_86"), ("sm_90", "sm_90"),
                                          ("sm_90a", "sm_90a"), ("sm_100", "sm_100"), ("sm_100f", "sm_100f"),
                                          ("sm_103a", "sm_103a"), ("sm_120", "sm_120")])
def test_cubin_arch(tmp_path, target, arch):
    info = image.validate(_nvcc(tmp_path, "a.cubin", "-cubin", f"-arch={target}"))
    assert info.archs == (arch,)
    e = info.entries[0]
    assert (e.kind, e.major * 10 + e.minor) == ("cubin", int(arch[3:6].rstrip("af")))


@needs_nvcc
def test_cubin_arch_markers(tmp_path):
    """'a' is attribute 9 of .nv.compat; 'f' only shows in the ptxas command line of .note.nv.tkinfo."""
    a = _nvcc(tmp_path, "a.cubin", "-cubin", "-arch=sm_90a")
    f = _nvcc(tmp_path, "f.cubin", "-cubin", "-arch=sm_100f")
    plain = _nvcc(tmp_path, "p.cubin", "-cubin", "-arch=sm_90")
    assert struct.unpack_from("<I", a, 48) == struct.unpack_from("<I", plain, 48)  # e_flags do not say 'a'
    assert image.validate(a.replace(b"-arch sm_90a", b"-arch xx_90a")).archs == ("sm_90a",)
    assert image.validate(f.replace(b"-arch sm_100f", b"-arch xx_100f")).archs == ("sm_100",)


def test_cubin_kernel_names(art, tmp_path):
    assert image.kernel_names(art["cubin"]) == KERNELS
    path = tmp_path / "x.cubin"
    path.write_bytes(art["cubin"])
    assert image.kernel_names(path) == KERNELS
    assert image.inspect(path) == image.validate(art["cubin"])


# ---------------------------------------------------------------- fatbin

def test_fatbin_entries_and_archs(art):
    for key in ("fatbin", "fatbin_raw", "fatbin_lz4"):
        info = image.validate(art[key])
        assert info.kind == "fatbin" and info.nbytes == len(art[key])
        assert sorted(info.archs) == ["compute_80", "sm_80", "sm_90a"], key
    comp = {e.arch: e.compression for e in image.validate(art["fatbin"]).entries}
    assert comp == {"compute_80": "zstd", "sm_80": "", "sm_90a": ""}  # nvcc 13 default: PTX only
    assert {e.compression for e in image.validate(art["fatbin_lz4"]).entries} == {"lz4"}
    assert {e.compression for e in image.validate(art["fatbin_raw"]).entries} == {""}


def test_fatbin_truncation(art):
    fat = art["fatbin_raw"]
    _, _, hsize, fsize = struct.unpack_from("<IHHQ", fat, 0)
    for cut in (5, 15, 16, 17, 100, len(fat) // 2, len(fat) - 1):
        msg = _raises(fat[:cut], "fatbin")
        assert msg == (f"fatbin truncated: header size {hsize} + fat size {fsize} = {hsize + fsize} bytes "
                       f"but the image has {cut} bytes") or (cut < 16 and msg.startswith("fatbin truncated: the header")), msg


def test_fatbin_sizes_past_the_end(art):
    fat = bytearray(art["fatbin_raw"])
    (o0, h0, p0, _), (o1, h1, p1, _) = _entries(fat)[:2]
    struct.pack_into("<Q", fat, o1 + 8, len(fat))  # entry 1's payload size
    assert _raises(bytes(fat)) == (f"fatbin entry 1 at byte {o1}: header size {h1} + payload size {len(fat)} ends "
                                   f"at byte {o1 + h1 + len(fat)}, past the end of the fatbin at byte {len(fat)}")
    fat = bytearray(art["fatbin_raw"])
    struct.pack_into("<Q", fat, 8, len(fat))  # outer fat size
    assert _raises(bytes(fat)).startswith(f"fatbin truncated: header size 16 + fat size {len(fat)}")
    fat = bytearray(art["fatbin_lz4"])
    o, _, p, _ = _entries(fat)[0]
    struct.pack_into("<I", fat, o + 16, p + 1)  # compressed size larger than the payload
    assert f"compressed size {p + 1} does not fit its {p}-byte payload" in _raises(bytes(fat))


def test_fatbin_embedded_cubin_is_checked(art):
    fat = bytearray(art["fatbin_raw"])
    for i, (o, h, p, _) in enumerate(_entries(fat)):
        if fat[o + h:o + h + 4] == b"\x7fELF":
            struct.pack_into("<Q", fat, o + h + 40, p)  # the embedded ELF's e_shoff: at its very end
            msg = _raises(bytes(fat))
            assert msg.startswith(f"fatbin entry {i} (cubin sm_") and "truncated: section header table" in msg
            return
    pytest.fail("no cubin entry")


def test_fatbin_kernel_names(art):
    assert image.kernel_names(art["fatbin"]) == KERNELS       # cubins are stored uncompressed
    assert image.kernel_names(art["fatbin_raw"]) == KERNELS
    assert image.kernel_names(art["fatbin_lz4"]) == KERNELS   # pure-Python LZ4
    assert image.kernel_names(art["ptx_only_raw"]) == KERNELS  # PTX when there is no cubin


def test_zstd_entries_are_refused_or_read(art):
    if HAS_ZSTD:
        assert image.kernel_names(art["ptx_only"]) == KERNELS
        return
    with pytest.raises(UnsupportedImageError, match=r"fatbin entry 0 \(ptx compute_80\) is compressed with zstd"):
        image.kernel_names(art["ptx_only"])


def test_lz4_round_trip_against_uncompressed_nvcc_output(art):
    lz4, raw = art["fatbin_lz4"], art["fatbin_raw"]
    pairs = list(zip(_entries(lz4), _entries(raw)))
    assert len(pairs) == 3
    for (o, h, p, flags), (o2, h2, p2, flags2) in pairs:
        assert flags & 0x2000 and not flags2 & 0xA000
        csize, = struct.unpack_from("<I", lz4, o + 16)
        usize, = struct.unpack_from("<Q", lz4, o + 56)
        out = image.lz4_block_decompress(lz4[o + h:o + h + csize], usize)
        assert len(out) == usize and out == raw[o2 + h2:o2 + h2 + usize]
        assert raw[o2 + h2 + usize:o2 + h2 + p2].strip(b"\0") == b""  # the rest is padding
        if out.startswith(b"\x7fELF"):
            assert image.validate(out).kind == "cubin"


def test_lz4_block_edge_cases():
    # literal "ab", then a match of 9 at distance 2 (overlapping), then the final literal "c"
    block = bytes([0x25]) + b"ab" + b"\x02\x00" + bytes([0x10]) + b"c"
    assert image.lz4_block_decompress(block, 2 + 9 + 1) == b"abababababa" + b"c"
    long_literal = bytes([0xF0, 255, 5]) + b"x" * (15 + 255 + 5)
    assert image.lz4_block_decompress(long_literal, 275) == b"x" * 275
    with pytest.raises(InvalidImageError, match="distance 0"):
        image.lz4_block_decompress(bytes([0x15]) + b"a" + b"\x00\x00" + bytes([0x10]) + b"c", 11)
    with pytest.raises(InvalidImageError, match="distance 9"):
        image.lz4_block_decompress(bytes([0x15]) + b"a" + b"\x09\x00" + bytes([0x10]) + b"c", 11)
    with pytest.raises(InvalidImageError, match="truncated"):
        image.lz4_block_decompress(bytes([0x15]) + b"a" + b"\x01", 11)
    with pytest.raises(InvalidImageError, match="decompressed to 1 bytes, the header says 5"):
        image.lz4_block_decompress(bytes([0x10]) + b"a", 5)


# ---------------------------------------------------------------- PTX

def test_ptx(art, tmp_path):
    info = image.validate(art["ptx"])
    assert (info.kind, info.archs) == ("ptx", ("compute_80",))
    assert image.kernel_names(art["ptx"]) == KERNELS
    assert image.kernel_names(art["ptx"] + b"\0") == KERNELS  # a terminating NUL is fine
    assert image.detect_kind(data=b"\n" * 100 + b".version 9.0\n.target sm_90\n") == "ptx"
    text = ".version 9.0\n.target sm_90a\n.address_size 64\n.weak .entry _Z1kILi3EEvv()\n{ ret; }\n"
    assert image.validate(text.encode()).archs == ("compute_90a",)
    assert image.kernel_names(text.encode()) == ["_Z1kILi3EEvv"]


def test_bad_ptx(art):
    ptx = art["ptx"]
    mid = len(ptx) // 2
    assert _raises(ptx[:mid] + b"\0" + ptx[mid:], "ptx") == f"PTX is not text: NUL byte at offset {mid}"
    assert _raises(ptx[:mid] + b"\xff\xfe" + ptx[mid:], "ptx") == f"PTX is not UTF-8 text: byte 0xff at offset {mid}"
    assert _raises(b"//\n.version 9.0\n", "ptx") == "PTX has no .target directive: not PTX"
    assert _raises(b"//\n.target sm_80\n", "ptx") == "PTX has no .version directive: not PTX"
    assert _raises(b"  \n\t\n", "ptx") == "PTX is empty"
    assert _raises(b"//\n.version 9.0\n.target texmode_independent\n", "ptx") == "PTX .target names no sm_XX architecture"


# ---------------------------------------------------------------- architecture rules

def _info(*archs: str) -> ImageInfo:
    entries = []
    for a in archs:
        kind, _, num = a.partition("_")
        suffix = num[-1] if num[-1] in "af" else ""
        n = int(num.rstrip("af"))
        entries.append(Entry("cubin" if kind == "sm" else "ptx", n // 10, n % 10, suffix))
    return ImageInfo("fatbin", tuple(entries), 0)


@pytest.mark.parametrize("arch, yes, no", [
    ("sm_80", [(8, 0), (8, 6), (8, 9)], [(7, 5), (9, 0), (12, 0)]),
    ("sm_86", [(8, 6), (8, 9)], [(8, 0), (9, 0)]),
    ("sm_90a", [(9, 0)], [(10, 0), (8, 9), (12, 0)]),
    ("sm_100f", [(10, 0), (10, 3)], [(11, 0), (12, 0)]),
    ("compute_80", [(8, 0), (8, 6), (9, 0), (12, 1)], [(7, 5)]),
    ("compute_90a", [(9, 0)], [(10, 0), (8, 0)]),
    ("compute_100f", [(10, 0), (10, 3)], [(12, 0), (9, 0)]),
])
def test_runs_on(arch, yes, no):
    e = _info(arch).entries[0]
    assert e.arch == arch
    assert [cc for cc in yes if e.runs_on(*cc)] == yes
    assert [cc for cc in no if e.runs_on(*cc)] == []


def test_select_and_check_arch(art):
    info = _info("compute_80", "sm_80", "sm_90a", "sm_100", "compute_120")
    pick = {cc: image.select_entry(info, *cc).arch for cc in [(8, 0), (8, 6), (8, 9), (9, 0), (10, 3), (12, 0)]}
    assert pick == {(8, 0): "sm_80", (8, 6): "sm_80", (8, 9): "sm_80", (9, 0): "sm_90a",
                    (10, 3): "sm_100", (12, 0): "compute_120"}
    assert image.check_arch(info, 12, 1).arch == "compute_120"
    assert image.select_entry(info, 7, 5) is None
    with pytest.raises(DeviceCapabilityError) as exc:
        image.check_arch(info, 7, 5, label="k.fatbin")
    assert str(exc.value).startswith("k.fatbin has no code for compute capability 7.5 (sm_75): it contains "
                                     "compute_80, sm_80, sm_90a, sm_100, compute_120.")
    real = image.validate(art["fatbin_raw"])  # sm_80, sm_90a, compute_80
    assert image.check_arch(real, 9, 0).arch == "sm_90a"
    assert image.check_arch(real, 10, 0).arch == "compute_80"
    assert not Entry("ltoir", 9, 0, "a").runs_on(9, 0)  # LTO-IR needs nvJitLink, never loads as is
    only_90a = _info("sm_90a")
    with pytest.raises(DeviceCapabilityError, match="contains sm_90a"):
        image.check_arch(only_90a, 10, 0)


# ---------------------------------------------------------------- Module.load refuses before the driver

def test_module_load_expands_compressed_entries(art):
    """A corrupt LZ4-compressed cubin passes the bounds checks alone (validate's default); the
    loader expands and checks it, so it is refused before the driver sees it."""
    fat = bytearray(art["fatbin_lz4"])
    for i, (o, h, p, _) in enumerate(_entries(fat)):
        csize, = struct.unpack_from("<I", fat, o + 16)
        if image.validate(art["fatbin_lz4"]).entries[i].kind == "cubin":
            fat[o + h:o + h + csize] = bytes(csize)  # the compressed bytes zeroed, sizes intact
            break
    else:
        pytest.fail("no compressed cubin entry")
    image.validate(bytes(fat))  # bounds only: accepted
    with pytest.raises(InvalidImageError, match=rf"fatbin entry {i} \(cubin sm_\w+\).*|LZ4"):
        image.validate(bytes(fat), expand=True)
    with pytest.raises(InvalidImageError, match="^<fatbin bytes>: .*LZ4|^<fatbin bytes>: fatbin entry"):
        ck.Module.load(bytes(fat))


def test_module_load_validates_first(art, tmp_path):
    with pytest.raises(InvalidImageError, match="^<cubin bytes>: cubin truncated"):
        ck.Module.load(art["cubin"][:1000])
    path = tmp_path / "broken.fatbin"
    path.write_bytes(art["fatbin_raw"][:-7])
    with pytest.raises(InvalidImageError, match="^broken.fatbin: fatbin truncated"):
        ck.Module.load(path)
    with pytest.raises(InvalidImageError, match="not EM_CUDA"):
        ck.Module.load(Path("/bin/sh"), kind="cubin")
