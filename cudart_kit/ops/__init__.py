"""The kit's own kernels as typed, stream-explicit operations."""

from .gemm import matmul
from .vector import add, axpy, copy, dot, fill, mul, scale, sub

__all__ = ["add", "sub", "mul", "axpy", "scale", "fill", "copy", "dot", "matmul"]
