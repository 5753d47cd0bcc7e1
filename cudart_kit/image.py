"""CUDA code images (cubin / fatbin / PTX) inspected in pure Python, before any driver sees them:
structural validation, target architectures and kernel entry names. Stdlib only: build.py,
setup.py and the CLI import it on machines without a GPU."""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from .errors import DeviceCapabilityError, InvalidImageError, UnsupportedImageError

__all__ = ["ImageInfo", "Entry", "UnsupportedImageError", "detect_kind", "validate", "inspect",
           "kernel_names", "select_entry", "check_arch", "lz4_block_decompress"]

# Facts read from nvcc 13.0 output (cubins with EI_ABIVERSION 8): the SM number is e_flags bits
# 8-15 (sm_90: 0x06005a04, sm_120: 0x06007802); e_flags are the same for sm_90 and sm_90a. Entries
# are STT_FUNC symbols with STO_CUDA_ENTRY in st_other (device functions lack it). By default
# nvcc 13 stores cubins raw and PTX (and -G cubins) zstd-compressed; --compress-mode=speed is LZ4.
EM_CUDA = 190
STO_CUDA_ENTRY = 0x10
FATBIN_MAGIC = 0xBA55ED50
_SHT_SYMTAB, _SHT_STRTAB, _SHT_NOBITS = 2, 3, 8
_FB_KINDS = {1: "ptx", 2: "cubin", 8: "ltoir"}
_FB_LZ4, _FB_ZSTD = 0x2000, 0x8000                  # fatbin entry flags: payload compression
_FB_ARCH_SPECIFIC, _FB_FAMILY = 0x100000, 0x200000  # sm_90a / sm_100f targets
_KINDS = ("cubin", "ptx", "fatbin")


@dataclass(frozen=True)
class Entry:
    """One piece of code: a cubin for ``sm_<arch><suffix>`` or PTX for ``compute_...``.
    ``suffix`` is '' , 'a' (arch-specific: exact CC only) or 'f' (family-specific)."""

    kind: str  # 'cubin' | 'ptx' | 'ltoir'
    major: int
    minor: int
    suffix: str = ""
    compression: str = ""  # '' | 'lz4' | 'zstd' (fatbin entries only)

    @property
    def arch(self) -> str:
        prefix = {"cubin": "sm", "ptx": "compute", "ltoir": "lto"}.get(self.kind, self.kind)
        return f"{prefix}_{self.major * 10 + self.minor}{self.suffix}"

    def runs_on(self, cc_major: int, cc_minor: int) -> bool:
        """Cubin: same major, minor >= ours ('a': the exact CC). PTX: any CC >= ours by JIT
        ('a': the exact CC, 'f': the same major). LTO-IR never loads as is."""
        if self.kind not in ("cubin", "ptx"):
            return False
        if self.suffix == "a":
            return (cc_major, cc_minor) == (self.major, self.minor)
        if self.kind == "cubin" or self.suffix == "f":
            return cc_major == self.major and cc_minor >= self.minor
        return (cc_major, cc_minor) >= (self.major, self.minor)


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`validate` learned: the kind, every code entry, and their arch names."""

    kind: str
    entries: tuple
    nbytes: int

    @property
    def archs(self) -> tuple:
        return tuple(e.arch for e in self.entries)


def _arch(number: int, kind: str, suffix: str = "", compression: str = "") -> Entry:
    return Entry(kind, number // 10, number % 10, suffix, compression)


def _read(data_or_path) -> bytes:
    is_bytes = isinstance(data_or_path, (bytes, bytearray, memoryview))
    return bytes(data_or_path) if is_bytes else Path(data_or_path).read_bytes()


def detect_kind(data: bytes | None = None, path: str | os.PathLike | None = None) -> str:
    """'cubin', 'ptx' or 'fatbin' from a file suffix, else from the leading bytes.

    Raises InvalidImageError (a ValueError) when the bytes are none of the three."""
    if path is not None:
        suffix = Path(path).suffix.lower().lstrip(".")
        suffix = "fatbin" if suffix in ("fatbinary", "fat") else suffix
        if suffix in _KINDS:
            return suffix
        with open(path, "rb") as f:
            data = f.read(4096)
    if data is None:
        raise ValueError("nothing to detect the module kind from")
    found = _magic_kind(data)
    if found:
        return found
    head = bytes(data[:4096]).lstrip()  # PTX out of a fatbin starts with blank lines
    if head.startswith((b"//", b"/*", b".version", b".target")) or b".version" in head[:256]:
        return "ptx"
    raise InvalidImageError(
        f"not a cubin, PTX or fatbin: the image starts with {bytes(data[:8]).hex(' ') or 'nothing (it is empty)'}; "
        "pass kind= if it is one")


def _magic_kind(data) -> str | None:
    head = bytes(data[:4])
    return "cubin" if head == b"\x7fELF" else "fatbin" if head == struct.pack("<I", FATBIN_MAGIC) else None


# ---------------------------------------------------------------- ELF (cubin)

class _Elf:
    """A checked view of a 64-bit little-endian CUDA ELF: every table lies inside ``data``."""

    def __init__(self, data: bytes, what: str = "cubin"):
        self.data, n = data, len(data)

        def bad(msg):
            return InvalidImageError(f"{what}{' ' if msg.startswith('truncated') else ': '}{msg}")

        if n < 64:
            raise bad(f"truncated: the ELF header needs 64 bytes but the image has {n} bytes")
        if data[:4] != b"\x7fELF":
            raise bad(f"not an ELF image (starts with {data[:4].hex(' ')})")
        if data[4] != 2:
            raise bad(f"ELF class {data[4]} is not ELFCLASS64 (2); CUDA cubins are 64-bit")
        if data[5] != 1:
            raise bad(f"ELF data encoding {data[5]} is not little-endian (1)")
        (self.e_type, machine, _, _, phoff, shoff, self.e_flags, _, phentsize, phnum,
         shentsize, shnum, shstrndx) = struct.unpack_from("<HHIQQQIHHHHHH", data, 16)
        if machine != EM_CUDA:
            raise bad(f"ELF e_machine is {machine}, not EM_CUDA ({EM_CUDA}): not a CUDA ELF")
        self.abi_version = data[8]
        if not shoff or shentsize != 64:
            raise bad("has no section header table" if not shoff else f"section header size is {shentsize}, not 64")
        if shoff + 64 > n:
            raise bad(f"truncated: section header table starts at byte {shoff} but the image has {n} bytes")
        if shnum == 0:  # extended numbering: the count lives in section 0 (and the index in its sh_link)
            shnum = struct.unpack_from("<Q", data, shoff + 32)[0]
        if shstrndx == 0xFFFF:
            shstrndx = struct.unpack_from("<I", data, shoff + 40)[0]
        end = shoff + shnum * 64
        if end > n:
            raise bad(f"truncated: section header table ends at byte {end} but the image has {n} bytes")
        # (name, type, offset, size, link, entsize) per section
        self.sections = [(s[0], s[1], s[4], s[5], s[6], s[9]) for s in
                         (struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * 64) for i in range(shnum))]
        for i, (_, typ, off, size, link, _) in enumerate(self.sections):
            if typ != _SHT_NOBITS and size and off + size > n:
                raise bad(f"truncated: section {i} ends at byte {off + size} but the image has {n} bytes")
            if typ == _SHT_SYMTAB and link >= shnum:
                raise bad(f"symbol table {i} links string table {link}, but there are {shnum} sections")
        if not 0 < shstrndx < shnum or self.sections[shstrndx][1] != _SHT_STRTAB:
            raise bad(f"section name string table index {shstrndx} is not a string table (of {shnum} sections)")
        if phnum:
            if phentsize != 56:
                raise bad(f"program header entry size is {phentsize}, not 56")
            end = phoff + phnum * 56
            if end > n:
                raise bad(f"truncated: program header table ends at byte {end} but the image has {n} bytes")
            for i in range(phnum):
                p_off, _, _, p_filesz = struct.unpack_from("<QQQQ", data, phoff + i * 56 + 8)
                if p_filesz and p_off + p_filesz > n:
                    raise bad(f"truncated: segment {i} ends at byte {p_off + p_filesz} but the image has {n} bytes")
        self.shstrndx = shstrndx
        self.bad = bad

    def string(self, table: int, offset: int) -> str:
        _, _, off, size, _, _ = self.sections[table]
        if offset >= size:
            raise self.bad(f"string offset {offset} is past the end of string table {table} ({size} bytes)")
        end = self.data.find(b"\0", off + offset, off + size)
        return self.data[off + offset:end if end >= 0 else off + size].decode("utf-8", "replace")

    def section(self, name: str) -> bytes | None:
        for s in self.sections:
            if self.string(self.shstrndx, s[0]) == name:
                return self.data[s[2]:s[2] + s[3]]
        return None

    def entry(self) -> Entry:
        """The SM target. ABI version >= 8 (nvcc 13): sm number in e_flags bits 8-15 (older ABIs
        of CUDA <= 12 kept it in bits 0-7; not produced by nvcc 13, so untested here). 'a' is
        attribute 9 (= 1) of .nv.compat, 'f' shows only in the ptxas command line of the note."""
        number = (self.e_flags >> 8) & 0xFF if self.abi_version >= 8 else self.e_flags & 0xFF
        suffix = ""
        compat = self.section(".nv.compat") or b""
        i = 0
        while i + 4 <= len(compat) and compat[i]:  # records: format, attribute, 2 bytes (+ payload for format 4)
            fmt, attr = compat[i], compat[i + 1]
            if fmt == 2 and attr == 9 and compat[i + 2] == 1:
                suffix = "a"
            i += 4 + (struct.unpack_from("<H", compat, i + 2)[0] if fmt == 4 else 0)
        note = self.section(".note.nv.tkinfo") or b""
        m = re.search(rb"-arch[ =]sm_(\d+)([af]?)\b", note)
        if not suffix and m and int(m.group(1)) == number:
            suffix = m.group(2).decode()
        return _arch(number, "cubin", suffix)

    def kernel_names(self) -> list[str]:
        """STT_FUNC symbols with STO_CUDA_ENTRY, defined in a section (device functions lack the bit)."""
        names = set()
        for _, typ, off, size, link, entsize in self.sections:
            if typ != _SHT_SYMTAB:
                continue
            for pos in range(off, off + size - size % 24, 24):
                st_name, info, other, shndx = struct.unpack_from("<IBBH", self.data, pos)
                if info & 0xF == 2 and other & STO_CUDA_ENTRY and shndx:
                    names.add(self.string(link, st_name))
        return sorted(names)


# ---------------------------------------------------------------- PTX

_PTX_ENTRY = re.compile(r"^\s*(?:\.(?:visible|weak|extern)\s+)*\.entry\s+([A-Za-z_$%][\w$%]*)\s*\(?", re.M)


def _ptx_text(data: bytes, what: str = "PTX") -> str:
    body = data.rstrip(b"\0")  # a terminating NUL (or fatbin padding) is allowed
    if not body.strip():
        raise InvalidImageError(f"{what} is empty")
    nul = body.find(b"\0")
    if nul >= 0:
        raise InvalidImageError(f"{what} is not text: NUL byte at offset {nul}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidImageError(f"{what} is not UTF-8 text: byte {body[exc.start]:#04x} at offset {exc.start}") from None
    for directive in (".version", ".target"):
        if not re.search(rf"^\s*\{directive}\s+\S", text, re.M):
            raise InvalidImageError(f"{what} has no {directive} directive: not PTX")
    return text


def _ptx_entry(text: str, compression: str = "") -> Entry:
    m = re.search(r"^\s*\.target\s+sm_(\d+)([af]?)", text, re.M)
    if not m:
        raise InvalidImageError("PTX .target names no sm_XX architecture")
    return _arch(int(m.group(1)), "ptx", m.group(2), compression)


# ---------------------------------------------------------------- fatbin

def _fatbin_entries(data: bytes):
    """Yield (index, Entry, payload, uncompressed size) of each fatbin entry, bounds checked.

    Layout (nvcc 13): a 16-byte header (magic u32, version u16, header size u16, fat size u64),
    then entries of a header (kind u16, version u16, header size u32, payload size u64,
    compressed size u32 @16, arch u32 @28, flags u64 @40, uncompressed size u64 @56) and payload."""
    n = len(data)
    if n < 16:
        raise InvalidImageError(f"fatbin truncated: the header needs 16 bytes but the image has {n} bytes")
    magic, version, hsize, fsize = struct.unpack_from("<IHHQ", data, 0)
    if magic != FATBIN_MAGIC:
        raise InvalidImageError(f"not a fatbin: magic {magic:#010x}, expected {FATBIN_MAGIC:#010x}")
    if version != 1:
        raise InvalidImageError(f"fatbin version {version} is not supported (expected 1)")
    if hsize < 16 or hsize + fsize > n:
        raise InvalidImageError(f"fatbin truncated: header size {hsize} + fat size {fsize} = {hsize + fsize} "
                                f"bytes but the image has {n} bytes")
    off, end, index = hsize, hsize + fsize, 0
    while off < end:
        where = f"fatbin entry {index} at byte {off}"
        if off + 64 > end:
            raise InvalidImageError(f"{where}: truncated: its header needs 64 bytes but only {end - off} remain")
        kind, _, ehsize, psize, csize = struct.unpack_from("<HHIQI", data, off)
        (arch,) = struct.unpack_from("<I", data, off + 28)
        flags, _, usize = struct.unpack_from("<QQQ", data, off + 40)
        if ehsize < 64 or off + ehsize + psize > end:
            raise InvalidImageError(f"{where}: header size {ehsize} + payload size {psize} ends at byte "
                                    f"{off + ehsize + psize}, past the end of the fatbin at byte {end}")
        comp = "zstd" if flags & _FB_ZSTD else "lz4" if flags & _FB_LZ4 else ""
        if comp and not 0 < csize <= psize:
            raise InvalidImageError(f"{where}: compressed size {csize} does not fit its {psize}-byte payload")
        suffix = "a" if flags & _FB_ARCH_SPECIFIC else "f" if flags & _FB_FAMILY else ""
        entry = _arch(arch, _FB_KINDS.get(kind, f"kind{kind}"), suffix, comp)
        payload = data[off + ehsize:off + ehsize + (csize if comp else psize)]
        yield index, entry, payload, usize
        off, index = off + ehsize + psize, index + 1


def _entry_label(index: int, entry: Entry) -> str:
    return f"fatbin entry {index} ({entry.kind} {entry.arch})"


def lz4_block_decompress(src: bytes, size: int) -> bytes:
    """Decompress one raw LZ4 block (no frame) that must expand to exactly ``size`` bytes.

    Raises InvalidImageError on malformed input or a size mismatch."""
    def more(length, i):  # a length nibble of 15 continues in bytes of 255, ended by one < 255
        while src[i] == 255:
            length, i = length + 255, i + 1
        return length + src[i], i + 1

    out, i, n = bytearray(), 0, len(src)
    try:
        while i < n:
            token, i = src[i], i + 1
            length, i = more(15, i) if token >> 4 == 15 else (token >> 4, i)
            out += src[i:i + length]
            i += length
            if i >= n:
                break
            dist, i = src[i] | src[i + 1] << 8, i + 2
            length, i = more(19, i) if token & 15 == 15 else ((token & 15) + 4, i)
            if not 0 < dist <= len(out) or len(out) + length > size:
                raise InvalidImageError(f"LZ4 block is corrupt (match distance {dist} at output byte {len(out)})")
            start = len(out) - dist
            if dist >= length:
                out += out[start:start + length]
            else:  # an overlapping match repeats the last ``dist`` bytes
                chunk = out[start:]
                out += chunk * (length // dist) + chunk[:length % dist]
    except IndexError:
        raise InvalidImageError("LZ4 block is truncated") from None
    if len(out) != size:
        raise InvalidImageError(f"LZ4 block decompressed to {len(out)} bytes, the header says {size}")
    return bytes(out)


def _payload(index: int, entry: Entry, payload: bytes, usize: int) -> bytes:
    if entry.compression == "lz4":
        return lz4_block_decompress(payload, usize)
    if entry.compression == "zstd":
        try:
            from compression import zstd  # stdlib from Python 3.14
        except ImportError:
            raise UnsupportedImageError(
                f"{_entry_label(index, entry)} is compressed with zstd; cannot list kernels on this Python "
                "(compression.zstd needs Python >= 3.14). Build the fatbin with `-no-compress` "
                "or `--compress-mode=speed` (LZ4) to make it readable here") from None
        try:
            out = zstd.decompress(payload)
        except zstd.ZstdError as exc:
            raise InvalidImageError(f"{_entry_label(index, entry)}: zstd payload is corrupt ({exc})") from None
        if len(out) != usize:
            raise InvalidImageError(f"{_entry_label(index, entry)}: zstd payload decompressed to {len(out)} "
                                    f"bytes, the header says {usize}")
        return out
    return payload


# ---------------------------------------------------------------- public API

def validate(data, kind: str | None = None, *, label: str | None = None, expand: bool = False) -> ImageInfo:
    """Check that ``data`` (bytes) is a well-formed cubin, PTX or fatbin (``kind``, else detected)
    so that the driver never reads past its end; return what it contains.

    Every ELF table and section, every fatbin entry header and payload must lie inside the
    buffer; embedded cubins and PTX are checked too. Compressed entries are bounds-checked and,
    with ``expand=True``, decompressed and checked like the others (LZ4 in pure Python, about
    25 MB/s; zstd where this Python has ``compression.zstd``, else left to the driver).
    Raises InvalidImageError naming the first problem found (prefixed with ``label``, e.g. the
    file name, when given)."""
    try:
        return _validate(bytes(data), kind, expand)
    except InvalidImageError as exc:
        if label:
            raise InvalidImageError(f"{label}: {exc}") from None
        raise


def _validate(data: bytes, kind: str | None, expand: bool = False) -> ImageInfo:
    if not data:
        raise InvalidImageError(f"the {kind or 'image'} is empty (0 bytes)")
    found = _magic_kind(data)
    if kind is None:
        kind = found or detect_kind(data=data)
    elif kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    elif found and found != kind:
        raise InvalidImageError(f"expected a {kind}, but the image is a {found} (by its magic bytes); "
                                f"pass kind={found!r} or rename the file")
    if kind == "cubin":
        return ImageInfo(kind, (_Elf(data).entry(),), len(data))
    if kind == "ptx":
        return ImageInfo(kind, (_ptx_entry(_ptx_text(data)),), len(data))
    entries = []
    for index, entry, payload, usize in _fatbin_entries(data):
        if entry.kind in ("cubin", "ptx") and (expand or not entry.compression):
            if entry.compression:
                try:
                    payload = _payload(index, entry, payload, usize)
                except UnsupportedImageError:  # zstd without a decompressor here: the driver's to read
                    payload = None
            if payload is not None:
                (_Elf if entry.kind == "cubin" else _ptx_text)(payload, _entry_label(index, entry))
        entries.append(entry)
    if not entries:
        raise InvalidImageError("fatbin has no entries")
    return ImageInfo(kind, tuple(entries), len(data))


def inspect(data_or_path) -> ImageInfo:
    """:func:`validate` on bytes or on the file at a path (the kind from the content).

    Raises InvalidImageError, or OSError when the file cannot be read."""
    return validate(_read(data_or_path))


def kernel_names(data_or_path) -> list[str]:
    """Sorted ``__global__`` entry names of a cubin, a PTX file, or a fatbin (the union over its
    cubins; over its PTX when it has no cubin). LZ4 entries are expanded in pure Python.

    Raises InvalidImageError for a malformed image and UnsupportedImageError when an entry that
    would be read is zstd-compressed and this Python has no ``compression.zstd`` (never an
    empty list in its place)."""
    data = _read(data_or_path)
    info = validate(data)
    if info.kind == "cubin":
        return _Elf(data).kernel_names()
    if info.kind == "ptx":
        return sorted(set(_PTX_ENTRY.findall(_ptx_text(data))))
    items = list(_fatbin_entries(data))
    kinds = {e.kind for _, e, _, _ in items}
    use = "cubin" if "cubin" in kinds else "ptx" if "ptx" in kinds else None
    if use is None:
        raise UnsupportedImageError(f"fatbin holds only {', '.join(sorted(kinds))} entries; cannot list kernels")
    names = set()
    for index, entry, payload, usize in items:
        if entry.kind != use:
            continue
        raw = _payload(index, entry, payload, usize)
        if use == "cubin":
            names.update(_Elf(raw, _entry_label(index, entry)).kernel_names())
        else:
            names.update(_PTX_ENTRY.findall(_ptx_text(raw, _entry_label(index, entry))))
    return sorted(names)


def select_entry(info: ImageInfo, cc_major: int, cc_minor: int) -> Entry | None:
    """The entry a device of compute capability ``cc_major.cc_minor`` would run, as the driver
    chooses: the closest matching cubin, else the newest PTX it can JIT; None when there is none."""
    fits = [e for e in info.entries if e.runs_on(cc_major, cc_minor)]
    fits.sort(key=lambda e: (e.kind == "cubin", e.major, e.minor, e.suffix != ""))
    return fits[-1] if fits else None


def check_arch(info: ImageInfo, cc_major: int, cc_minor: int, *, label: str = "the image") -> Entry:
    """The entry that runs on compute capability ``cc_major.cc_minor`` (see :func:`select_entry`).

    Raises DeviceCapabilityError (a ValueError) listing the image's targets when none fits."""
    entry = select_entry(info, cc_major, cc_minor)
    if entry is None:
        have = ", ".join(info.archs) or "no code"
        raise DeviceCapabilityError(
            f"{label} has no code for compute capability {cc_major}.{cc_minor} (sm_{cc_major}{cc_minor}): "
            f"it contains {have}. Rebuild it for sm_{cc_major}{cc_minor} (or add PTX for an older "
            "architecture, e.g. -gencode=arch=compute_80,code=compute_80)")
    return entry
