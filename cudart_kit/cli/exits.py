"""Exit codes of the ``cudart-kit`` command, the usage error, and the ``--help`` epilog that
lists what each code means for a command (docs/cli.md has the same table)."""

from __future__ import annotations

__all__ = ["EXIT_OK", "EXIT_FAIL", "EXIT_USAGE", "EXIT_INTERRUPTED", "EXIT_CODES", "NO_GPU", "UsageError",
           "exit_codes", "exit_codes_epilog"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAIL: "failure: no NVIDIA driver or no visible GPU, a CUDA call failed, a required package is "
               "missing, a file could not be written, an internal error; or the command's own verdict "
               "failed (a doctor check, overlap's comparison with numpy, a build)",
    EXIT_USAGE: "usage error: unknown option, bad value, options that do not fit together or do not fit "
                "the machine (e.g. a transfer size larger than free device memory)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}
# The failure (exit code 1) every command that needs a GPU shares.
NO_GPU = "no NVIDIA driver or no visible GPU, a CUDA call failed, or a required package is missing"


class UsageError(Exception):
    """A command line that cannot be run as given (exit code 2). ``usage`` is the usage text
    to print above the message (argparse errors carry it); ``reported``: the message is
    already on stderr (a delegated parser printed it)."""

    def __init__(self, message: str, *, usage: str = "", reported: bool = False):
        super().__init__(message)
        self.usage = usage
        self.reported = reported


def exit_codes(ok: str, fail: str, usage: str = EXIT_CODES[EXIT_USAGE]) -> dict[int, str]:
    """A command's meaning of each exit code: its own words for 0, 1 and 2; Ctrl-C's for 130."""
    return {EXIT_OK: ok, EXIT_FAIL: fail, EXIT_USAGE: usage, EXIT_INTERRUPTED: EXIT_CODES[EXIT_INTERRUPTED]}


def exit_codes_epilog(meanings: dict[int, str]) -> str:
    """The ``--help`` epilog listing the exit codes a command uses."""
    return "exit codes:\n" + "\n".join(f"  {code:<3}  {text}" for code, text in meanings.items())
