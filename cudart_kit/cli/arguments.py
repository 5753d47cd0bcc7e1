"""Argument types of the ``cudart-kit`` command: the one set, for every subcommand, and the
``--json`` option they all share. Each type turns a string into a value or raises
``argparse.ArgumentTypeError`` with the sentence argparse prints after the option's name. Sizes are parsed by :func:`cudart_kit.bandwidth.parse_size`
(the kit's one size parser), integer lists by the overlap experiment's ``parse_int_list``."""

from __future__ import annotations

import argparse

__all__ = ["parse_device_list", "size_bytes", "parse_memory_kinds", "device_index", "positive_int",
           "non_negative_int", "positive_float", "int_list", "iters_list", "add_json"]


def parse_device_list(text: str):
    """``"all"`` -> "all"; ``"0"`` -> [0]; ``"0,2"`` -> [0, 2]."""
    t = text.strip().lower()
    if t == "all":
        return "all"
    try:
        out = [int(p) for p in t.split(",") if p.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a device index, a comma list (0,1) or 'all', got {text!r}") from None
    if not out or any(i < 0 for i in out):
        raise argparse.ArgumentTypeError(f"expected device indices >= 0, got {text!r}")
    return sorted(set(out))


def size_bytes(text: str) -> int:
    """``32M`` -> 33554432 (K/M/G are binary), by :func:`cudart_kit.bandwidth.parse_size`."""
    from ..bandwidth import SizeError, parse_size

    try:
        return parse_size(text)
    except SizeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_memory_kinds(text: str) -> tuple:
    """``"pinned,pageable"`` -> ("pinned", "pageable"); ``"all"`` -> every host memory kind."""
    from ..bandwidth import HOST_MEMORY

    aliases = {"write-combined": "wc", "writecombined": "wc", "page-locked": "pinned"}
    t = text.strip().lower()
    if t == "all":
        return HOST_MEMORY
    kinds = [aliases.get(p.strip(), p.strip()) for p in t.split(",") if p.strip()]
    bad = [k for k in kinds if k not in HOST_MEMORY]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown host memory {', '.join(bad) or text!r}: choose from {', '.join(HOST_MEMORY)} or all")
    return tuple(k for k in HOST_MEMORY if k in kinds)


def _whole_number(minimum: int, expected: str = "a whole number"):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
        return value

    return parse


device_index = _whole_number(0, "a device index (0, 1, ...)")
positive_int = _whole_number(1)
non_negative_int = _whole_number(0)


def positive_float(text: str) -> float:
    """A finite number > 0 (``256``, ``0.5``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number (e.g. 256 or 0.5), got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def int_list(minimum: int, what: str):
    """A type for a comma list of whole numbers >= ``minimum`` (order kept, duplicates
    dropped); ``what`` names the values in the error and is argparse's name for the type."""
    def parse(text: str) -> list[int]:
        from ..experiments.overlap.model import parse_int_list

        try:
            return parse_int_list(text, minimum=minimum, what=what)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = what  # argparse names the type in its error messages
    return parse


def iters_list(text: str):
    """``auto`` -> None (calibrate), else a comma list of iteration counts >= 0."""
    if text.strip().lower() == "auto":
        return None
    return int_list(0, "iters")(text)


def add_json(parser_or_group, schema: str, what: str = "") -> None:
    """The ``--json`` option, meaning the same for every command: the document on stdout."""
    parser_or_group.add_argument(
        "--json", action="store_true",
        help=f"print the JSON document (schema {schema}) on stdout{what}; on failure, the JSON error "
             "object (schema cudart-kit/error/1)")
