"""Janus' core error codes.

Clients (janus.js, the aPuppet agent) branch on these numbers, so they keep Janus' values even where another
number would read better.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    UNAUTHORIZED = 403
    UNAUTHORIZED_PLUGIN = 405
    TRANSPORT_SPECIFIC = 450
    MISSING_REQUEST = 452
    UNKNOWN_REQUEST = 453
    INVALID_JSON = 454
    INVALID_JSON_OBJECT = 455
    MISSING_MANDATORY_ELEMENT = 456
    INVALID_REQUEST_PATH = 457
    SESSION_NOT_FOUND = 458
    HANDLE_NOT_FOUND = 459
    PLUGIN_NOT_FOUND = 460
    PLUGIN_ATTACH = 461
    PLUGIN_MESSAGE = 462
    PLUGIN_DETACH = 463
    JSEP_UNKNOWN_TYPE = 464
    JSEP_INVALID_SDP = 465
    INVALID_ELEMENT_TYPE = 467
    SESSION_CONFLICT = 468
    UNEXPECTED_ANSWER = 469
    WEBRTC_STATE = 471
    NOT_ACCEPTING_SESSIONS = 472
    TOO_MANY_REQUESTS = 429
    UNKNOWN = 490


class JanusError(Exception):
    """A request that must be answered with a Janus `error` envelope."""

    def __init__(self, code: ErrorCode | int, reason: str) -> None:
        super().__init__(reason)
        self.code = int(code)
        self.reason = reason
