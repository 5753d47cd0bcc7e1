"""Matmul argument handling that needs no GPU: layouts, algorithm choice."""

import numpy as np
import pytest

from cudart_kit.errors import DTypeError, ShapeError
from cudart_kit.memory import Array
from cudart_kit.ops.gemm import choose_algo, layout_of


def fake(shape, strides, dtype=np.float32):
    return Array._make(0x1000, shape, np.dtype(dtype), strides, "foreign", None, None)


def test_layouts():
    assert layout_of(fake((3, 5), (20, 4)), "a") == (0, 5)          # row-major
    assert layout_of(fake((3, 5), (32, 4)), "a") == (0, 8)          # sub-matrix, ld 8
    assert layout_of(fake((3, 5), (4, 12)), "a") == (1, 3)          # column-major view
    assert layout_of(fake((1, 5), (4, 4)), "a") == (0, 5)
    with pytest.raises(ShapeError, match="neither row- nor column-major"):
        layout_of(fake((3, 5), (40, 8)), "a")
    with pytest.raises(ShapeError, match="2-D"):
        layout_of(fake((3,), (4,)), "a")


def test_choose_algo():
    f32 = np.dtype(np.float32)
    assert choose_algo(f32, 0, 0, False) == "simt16"
    assert choose_algo(f32, 1, 0, False) == "tiled"
    assert choose_algo(f32, 0, 0, True) == "tf32"
    assert choose_algo(np.dtype(np.float16), 0, 0, False) == "fp16"
    with pytest.raises(DTypeError, match="float64"):
        choose_algo(np.dtype(np.float64), 0, 0, False)
