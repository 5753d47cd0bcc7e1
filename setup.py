"""Packaging hook: a built wheel carries the kernel sources, the nvcc-built fatbins and their
manifest, so it runs on machines without nvcc. Editable installs build kernels on first use
(or with `cudart-kit build`) instead of at install time."""

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
        pkg = Path(self.build_lib) / "cudart_kit"
        src = ROOT / "kernels"
        dest_src = pkg / "_kernels"
        dest_src.mkdir(parents=True, exist_ok=True)
        for f in list(src.glob("*.cu")) + list(src.glob("*.cuh")):
            shutil.copy2(f, dest_src / f.name)
        build = _load_build_module()
        build.build(force=True, src_dir=src, out_dir=pkg / "_artifacts", log=print)


setup(cmdclass={"build_py": BuildPyWithKernels})
