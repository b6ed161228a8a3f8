"""Session ID and password: what a viewer types to reach this device.

aPuppet uses 8 digits and 4 digits from `Math.random` (10^4 passwords, spec §6.1, §11). The default here is a
10-digit Session ID and an 8-character password from a confusion-free alphabet (about 45 bits), both from
`secrets`; `apuppet` style keeps aPuppet's format (still from `secrets`) for the classic web-admin's
`maxlength` fields.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

from ..config import DEFAULT_PASSWORD_CHARS

STYLES = {
    # style: (session id length, password alphabet, password length)
    "strong": (10, DEFAULT_PASSWORD_CHARS, 8),
    "apuppet": (8, "0123456789", 4),
}


@dataclass(frozen=True, slots=True)
class Credentials:
    session: str
    password: str

    @classmethod
    def generate(cls, style: str = "strong") -> Credentials:
        try:
            id_length, alphabet, length = STYLES[style]
        except KeyError:
            raise ValueError(f"unknown credential style {style!r} (choose {', '.join(STYLES)})") from None
        # A leading zero would be lost by anything that reads the Session ID as a number.
        session = secrets.choice("123456789") + "".join(secrets.choice("0123456789") for _ in range(id_length - 1))
        password = "".join(secrets.choice(alphabet) for _ in range(length))
        return cls(session, password)

    def link(self, server_url: str) -> str:
        """The share link of the Android agent (§6.2): the server URL with `session` and `pin` filled in."""
        separator = "&" if "?" in server_url else "?"
        return f"{server_url}{separator}{urlencode({'session': self.session, 'pin': self.password})}"

    def __repr__(self) -> str:
        return f"Credentials(session={self.session!r}, password=<hidden>)"
