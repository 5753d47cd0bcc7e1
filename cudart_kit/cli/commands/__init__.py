"""The subcommands of ``cudart-kit``, one module per command group. Each module has
``add_parsers(subparsers, **kwargs)``, which adds its subcommands (options, help, exit codes,
``func``) and touches no driver, and its command functions, which take the parsed arguments,
print, and return an exit code or raise (:func:`cudart_kit.cli.main` reports the failure)."""

from __future__ import annotations

from . import bandwidth, build, collectives, doctor, info, overlap

__all__ = ["COMMANDS", "bandwidth", "build", "collectives", "doctor", "info", "overlap"]

# In the order ``cudart-kit --help`` lists them.
COMMANDS = (build, info, bandwidth, doctor, overlap, collectives)
