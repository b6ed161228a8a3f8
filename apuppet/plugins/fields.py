"""Request-field checks shared by the plugin cores (rooms, mountpoints).

Each plugin reports a bad field with its own Janus error codes (streaming 453/454, textroom 413/414), which the
clients branch on; the checks themselves are the same, so they live here once, parametrized by those codes.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]


class RequestError(Exception):
    """A request refused with a plugin error code; the plugin turns it into its own error shape."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = int(code)
        self.reason = reason


def same_secret(given: Any, expected: str) -> bool:
    """Constant-time comparison of a pin or secret; an empty expected value never matches."""
    if not expected or not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def is_unicode(value: str) -> bool:
    """JSON may spell a lone surrogate ("\\ud800"), which Python keeps but UTF-8 cannot encode: such a name would
    fail later in every place that stores or prints it (SQLite, logs), so it is refused where it comes in, as
    Janus' JSON parser refuses it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Fields:
    missing: int
    invalid: int

    def identifier(self, msg: JSON, name: str, max_int: int, max_len: int) -> str | int:
        """A room or mountpoint id: Janus' string ids (`string_ids = true`) or positive integers."""
        value = msg.get(name)
        if value is None:
            raise RequestError(self.missing, f"Missing mandatory element ({name})")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise RequestError(self.invalid, f"Invalid element ({name} should be a string or integer)")
        if isinstance(value, int) and not 0 < value <= max_int:
            raise RequestError(self.invalid, f"Invalid element ({name} out of range)")
        if isinstance(value, str) and not 0 < len(value) <= max_len:
            raise RequestError(self.invalid, f"Invalid element ({name} should be 1 to {max_len} characters)")
        if isinstance(value, str) and not is_unicode(value):
            raise RequestError(self.invalid, f"Invalid element ({name} is not valid Unicode)")
        return value

    def text(self, msg: JSON, name: str, limit: int) -> str | None:
        value = msg.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise RequestError(self.invalid, f"Invalid element ({name} should be a string)")
        if len(value) > limit:
            raise RequestError(self.invalid, f"Invalid element ({name} longer than {limit})")
        if not is_unicode(value):
            raise RequestError(self.invalid, f"Invalid element ({name} is not valid Unicode)")
        return value

    def flag(self, msg: JSON, name: str, default: bool) -> bool:
        value = msg.get(name, default)
        if not isinstance(value, bool):
            raise RequestError(self.invalid, f"Invalid element ({name} should be a boolean)")
        return value

    def integer(self, msg: JSON, name: str, default: int, low: int, high: int) -> int:
        value = msg.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise RequestError(self.invalid, f"Invalid element ({name} should be {low} to {high})")
        return value
