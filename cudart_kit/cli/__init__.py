"""The ``cudart-kit`` command: one front end for every subcommand, no logic of its own.

Subcommands: ``build`` (delegates to :func:`cudart_kit.build.main`), ``devices``, ``query``
(alias ``info``), ``bandwidth``, ``doctor`` and ``overlap``. Their data come from
:mod:`cudart_kit.query`, :mod:`cudart_kit.bandwidth`, :mod:`cudart_kit.doctor` and
:mod:`cudart_kit.experiments.overlap` as plain dicts or reports. A command fails by raising;
:func:`main` alone turns the exception into one line on stderr, the exit code and, with
``--json``, the JSON error object on stdout. One module per job, imports pointing one way::

    app        main(): parse, dispatch, failures -> exit codes            <- parser, commands.build
    parser     argparse subclasses, build_parser(), subcommands()         <- commands
    commands/  one module per command group: its options and handlers     <- arguments, render
    render/    the text of each command's report (tables, CSV, verdicts)  <- output
    arguments  the one set of argument types; sizes by bandwidth.parse_size
    output     Printer, plain tables, JSON, the error object, output files <- exits
    exits      exit codes, UsageError, the --help list of exit codes
    visible    CUDA_VISIBLE_DEVICES: the CLI's one place for it (explained by errors.visible_devices_hint)

Importing this package touches no driver (stdlib only; the gatherers load when a command runs).
"""

from __future__ import annotations

from .app import TRACEBACK_ENV, main
from .arguments import (
    add_json, device_index, int_list, iters_list, non_negative_int, parse_device_list, parse_memory_kinds,
    positive_float, positive_int, size_bytes,
)
from .commands.bandwidth import bandwidth_options, cmd_bandwidth
from .commands.build import cmd_build
from .commands.doctor import cmd_doctor
from .commands.info import cmd_devices, cmd_query
from .commands.overlap import cmd_overlap
from .exits import (
    EXIT_CODES, EXIT_FAIL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError, exit_codes, exit_codes_epilog,
)
from .output import (
    ERROR_SCHEMA, PROG, Printer, check_writable, error_document, error_line, render_pairs, render_table,
    rich_available, to_json, use_rich, write_json_file,
)
from .parser import build_parser, subcommands
from .render import (
    BANDWIDTH_CSV_FIELDS, BANDWIDTH_HEADERS, DEVICE_HEADERS, Progress, bandwidth_csv, bandwidth_rows,
    bandwidth_sweep, device_line, devices_header, devices_rows, doctor_rows, doctor_summary, peer_rows,
    print_bandwidth, print_devices, print_doctor, print_query, query_sections,
)

__all__ = [
    # entry point, parser, exit codes
    "main", "build_parser", "subcommands", "UsageError", "EXIT_CODES", "EXIT_OK", "EXIT_FAIL", "EXIT_USAGE",
    "EXIT_INTERRUPTED", "exit_codes", "exit_codes_epilog", "TRACEBACK_ENV", "PROG",
    # argument types
    "parse_device_list", "parse_memory_kinds", "device_index", "positive_int", "non_negative_int",
    "positive_float", "size_bytes", "int_list", "iters_list", "add_json",
    # command handlers
    "cmd_build", "cmd_devices", "cmd_query", "cmd_bandwidth", "cmd_doctor", "cmd_overlap", "bandwidth_options",
    # output
    "ERROR_SCHEMA", "Printer", "Progress", "to_json", "error_document", "error_line", "check_writable",
    "write_json_file", "render_table", "render_pairs", "rich_available", "use_rich",
    "DEVICE_HEADERS", "devices_rows", "devices_header", "print_devices", "query_sections", "peer_rows",
    "print_query", "BANDWIDTH_CSV_FIELDS", "BANDWIDTH_HEADERS", "bandwidth_csv", "bandwidth_rows",
    "bandwidth_sweep", "device_line", "print_bandwidth", "doctor_rows", "doctor_summary", "print_doctor",
]
