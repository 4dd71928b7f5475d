"""One error policy: every domain error carries a hint and maps to one exit code.

Exit codes (documented in README, used by CI gates):
  0 all budgets pass, 1 a budget fails, 2 bad usage or input, 3 internal error.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

EXIT_OK = 0
EXIT_BUDGET_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3


# a message quotes user input (values, names); it never grows past this, whatever the input
MAX_MESSAGE = 600


# a password in a URL (sqlite/postgresql/mysql storage, MLflow, Ray addresses) and key=value secrets
_URL_SECRET = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):(?P<secret>[^@\s]*)@")
# the same without a scheme: a Ray or SSH address written user:password@host
_BARE_SECRET = re.compile(r"(?<![\w/:.%+-])(?P<head>[A-Za-z0-9._%+-]+):(?P<secret>[^@\s/]+)@(?=[\w\[])")
_KV_SECRET = re.compile(r"(?i)\b(?P<key>password|passwd|pwd|token|secret|api[_-]?key|access[_-]?key|auth)=(?P<secret>[^&\s;,'\"]+)")


def redact(text: str) -> str:
    """``text`` with every credential it carries masked: ``scheme://user:***@host``, ``password=***``.
    Every message edgesmith prints (errors, progress, reports of a study's storage) goes through it."""
    text = _BARE_SECRET.sub(r"\g<head>:***@", _URL_SECRET.sub(r"\g<head>:***@", text))
    return _KV_SECRET.sub(r"\g<key>=***", text)


_ESCAPE_SEQUENCE = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` safe for a terminal and a log: terminal escape sequences (colours from a library's message, or
    planted in a file name) dropped, other control and bidirectional-override characters shown as ``\\xNN``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", _ESCAPE_SEQUENCE.sub("", text))


def shown(text: str) -> str:
    """What edgesmith prints of any text that may carry user input or a library's message: secrets masked,
    terminal control removed. Errors, progress lines and notes all go through it."""
    return printable(redact(text))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 25] + f" ... ({len(text) - limit + 25} more chars)"


class EdgesmithError(Exception):
    """Base class. ``message`` says what went wrong, ``hint`` what to do about it."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = _clip(" ".join(shown(self.message).split()), MAX_MESSAGE)
        if self.hint:
            text += f" (hint: {_clip(' '.join(shown(self.hint).split()), MAX_MESSAGE // 2)})"
        return text

    def __str__(self) -> str:
        return self.one_line()


class ConfigError(EdgesmithError):
    """A recipe, profile, flag or pass option is invalid."""


class InputError(EdgesmithError):
    """A model, weights file or data set given by the user is unusable."""


class ExportError(EdgesmithError):
    """torch -> ONNX export failed or the exported model does not match torch."""


class BackendUnavailable(EdgesmithError):
    """An optional runtime or library is not installed or cannot run here."""


class ProfileViolation(EdgesmithError):
    """A validated artifact breaks one or more budgets of its target profile."""

    exit_code = EXIT_BUDGET_FAILED


class DeviceError(EdgesmithError):
    """A device over SSH cannot be reached, logged into, trusted, set up or used (``edgesmith.remote``)."""


class RemoteFailure(EdgesmithError):
    """A command edgesmith ran on a device failed there; carries the exit code it would have had locally."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = EXIT_BAD_INPUT):
        super().__init__(message, hint)
        self.exit_code = exit_code


def refused_data(exc: BaseException) -> InputError | None:
    """ONNX Runtime's InvalidArgument while running the user's model on the user's data (an index past the
    vocabulary, a shape the graph does not take, a wrong dtype): bad input, named, not an internal error."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:  # NOTE: a library (NNCF's statistics) may wrap it
        if type(cause).__name__ == "InvalidArgument" and "onnxruntime" in type(cause).__module__:
            break
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    if cause is None or id(cause) in seen:
        return None
    exc = cause
    text = " ".join(str(exc).split())
    detail = text.split("Status Message:", 1)[-1].strip() if "Status Message:" in text else text.split(":", 3)[-1].strip()
    node = text.split("Name:", 1)[1].split()[0].strip("'") if "Name:" in text else None
    return InputError(
        f"ONNX Runtime refused the data{f' at node {node}' if node else ''}: {detail}",
        hint="check the data against the model's inputs: shapes, dtypes and value ranges (token ids below the vocabulary size, class indices)",
    )


@contextlib.contextmanager
def data_refusals_named() -> Iterator[None]:
    """Around any work that runs the user's model on the user's data, whichever library runs it (edgesmith's
    sessions, ORT's calibrator, NNCF's statistics, INC): ONNX Runtime refusing that data is bad input."""
    try:
        yield
    except EdgesmithError:
        raise
    except Exception as exc:
        refused = refused_data(exc)
        if refused is None:
            raise
        raise refused from exc
