"""Short tags for session and handle ids in logs and operator events.

A Janus session id is a bearer token: whoever holds it may keep the session alive, attach, hang up and destroy.
Logs are read by more people than the API, so they carry a tag instead: the first 8 hex digits of a keyed BLAKE2
of the id. The key is random per process, so a tag cannot be turned back into an id (not even by trying every
id), yet the same id gives the same tag for the whole life of the process, which is all a log reader needs to
follow one session.
"""

from __future__ import annotations

import hashlib
import secrets

_KEY = secrets.token_bytes(32)

#: Fields of operator events that hold an id; `Gateway` tags them before any observer sees them.
ID_FIELDS = frozenset({"session", "session_id", "handle", "handle_id"})


def tag(value: int | str) -> str:
    return hashlib.blake2b(str(value).encode(), key=_KEY, digest_size=4).hexdigest()
