"""Packaging hook: a built wheel carries the kernel sources, the nvcc-built fatbins and their
manifest, so it runs on machines without nvcc. Editable installs build kernels on first use
(or with `cudart-kit build`) instead of at install time.

A wheel is built from the sdist (`python -m build`): MANIFEST.in puts kernels/ into the sdist,
and a wheel build that finds no kernel sources, or ends without a fresh artifact for every
source, fails instead of shipping a wheel without kernels."""

import importlib
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def _load_build_module():
    # Import cudart_kit.build by path with the repo on sys.path: the package __init__ is lazy,
    # so this imports only build.py and errors.py (no numpy, no cuda) in an isolated build env.
    sys.path.insert(0, str(ROOT))
    return importlib.import_module("cudart_kit.build")


class BuildPyWithKernels(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        build = _load_build_module()
        src = ROOT / "kernels"
        sources = sorted(src.glob("*.cu")) if src.is_dir() else []
        if not sources:
            raise SystemExit(
                f"cudart-kit: no kernel sources in {src}: a wheel without kernels would be useless. "
                "Build from a git checkout or from an sdist made by `python -m build` (MANIFEST.in "
                "includes kernels/)."
            )
        pkg = Path(self.build_lib) / "cudart_kit"
        dest_src = pkg / "_kernels"
        out = pkg / "_artifacts"
        for d in (dest_src, out):  # nothing stale from an earlier build_lib
            shutil.rmtree(d, ignore_errors=True)
        dest_src.mkdir(parents=True)
        for f in sources + sorted(src.glob("*.cuh")):
            shutil.copy2(f, dest_src / f.name)
        build.build(force=True, src_dir=dest_src, out_dir=out, log=print, prebuilt=True)
        (out / ".lock").unlink(missing_ok=True)
        bad = {n: build.status(n, src_dir=dest_src, out_dir=out) for n in build.specs(dest_src)}
        bad = {n: st for n, st in bad.items() if not st.fresh}
        if bad or len(build.specs(dest_src)) != len(sources):
            raise SystemExit(f"cudart-kit: kernel artifacts not fresh after the build: {bad}")
        total = sum(p.stat().st_size for p in out.iterdir())
        print(f"cudart-kit: {len(sources)} kernel artifacts, {total / 2**20:.1f} MiB")


setup(cmdclass={"build_py": BuildPyWithKernels})
