"""The mountpoint registry without sockets: validation, ownership, secrets, limits."""

import errno

import pytest

from apuppet.api.throttle import Throttle
from apuppet.plugins.mountpoints import (
    MAX_MOUNTPOINTS_PER_OWNER,
    Mountpoints,
    RequestError,
    StreamingError,
)

BODY = {"request": "create", "type": "rtp", "video": True, "id": "42", "pin": "1234", "secret": "s3cret"}


def ports():
    counter = iter(range(30000, 31000))
    return lambda wanted: wanted or next(counter)


def error_of(call) -> int:
    with pytest.raises(RequestError) as info:
        call()
    return info.value.code


def test_create_defaults_and_reply_shape():
    mps = Mountpoints()
    mp = mps.create("owner", {"request": "create", "type": "rtp", "video": True, "id": 7}, "1.2.3.4", ports())
    assert (mp.name, mp.description, mp.videopt, mp.videortpmap) == ("7", "7", 100, "H264/90000")
    assert mp.created()["stream"] == {"id": 7, "type": "live", "description": "7", "is_private": False,
                                      "video_port": 30000}  # fmt: skip
    assert mps.take_reports()[0][0] == "mountpoint_created"
    # "7" and 7 are the same mountpoint.
    assert error_of(lambda: mps.create("x", {**BODY, "id": "7"}, "", ports())) == StreamingError.CANT_CREATE


def test_random_id_when_none_is_given():
    mps = Mountpoints()
    mp = mps.create("owner", {"request": "create", "type": "rtp", "video": True}, "", ports())
    assert isinstance(mp.id, int) and 0 < mp.id < 2**53


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"type": "rtp"}, StreamingError.INVALID_ELEMENT),  # no video
        ({"type": "rtp", "video": True, "videortpmap": "VP8/90000"}, StreamingError.INVALID_ELEMENT),
        ({"type": "rtp", "video": True, "videopt": 300}, StreamingError.INVALID_ELEMENT),
        ({"type": "rtp", "video": True, "videoport": "10000"}, StreamingError.INVALID_ELEMENT),
        ({"type": "rtp", "video": True, "pin": 1234}, StreamingError.INVALID_ELEMENT),
        ({"type": "rtp", "video": True, "permanent": True}, StreamingError.INVALID_ELEMENT),
        ({"type": "rtp", "video": True, "id": 0}, StreamingError.INVALID_ELEMENT),
        ({"type": "rtp", "video": True, "id": "x" * 200}, StreamingError.INVALID_ELEMENT),
        ({"video": True}, StreamingError.MISSING_ELEMENT),
    ],
)
def test_create_validation(body, code):
    assert error_of(lambda: Mountpoints().create("o", body, "", ports())) == code


def test_bind_failure_is_456_and_registers_nothing():
    def busy(port: int) -> int:
        raise OSError(errno.EADDRINUSE, "Address already in use")

    mps = Mountpoints()
    assert error_of(lambda: mps.create("o", BODY, "", busy)) == StreamingError.CANT_CREATE
    assert mps.mountpoints == {}


def test_per_owner_limit():
    mps = Mountpoints()
    for i in range(MAX_MOUNTPOINTS_PER_OWNER):
        mps.create("o", {**BODY, "id": i + 1}, "", ports())
    assert error_of(lambda: mps.create("o", {**BODY, "id": "one-more"}, "", ports())) == StreamingError.CANT_CREATE
    mps.create("someone else", {**BODY, "id": "theirs"}, "", ports())


def test_destroy_and_edit_need_the_owner_a_secret_or_the_admin():
    mps = Mountpoints(admin_secret="adm")
    mps.create("owner", BODY, "", ports())
    assert error_of(lambda: mps.destroy("stranger", {"id": "42"}, "9.9.9.9")) == StreamingError.UNAUTHORIZED
    assert error_of(lambda: mps.edit("stranger", {"id": "42", "new_pin": "0", "secret": "no"}, "9.9.9.9")) == 457
    edited = mps.edit("stranger", {"id": "42", "new_pin": "9999", "secret": "s3cret"}, "9.9.9.9")
    assert edited.pin == "9999"
    mps.edit("owner", {"id": "42", "new_description": "Pixel", "new_is_private": True}, "")
    assert mps.mountpoints["42"].description == "Pixel" and mps.mountpoints["42"].is_private
    assert mps.destroy("stranger", {"id": "42", "admin_key": "adm"}, "9.9.9.9").id == "42"
    assert mps.mountpoints == {}


def test_wrong_secrets_are_throttled_per_address():
    mps = Mountpoints(address_throttle=Throttle(free=2, base_delay=60))
    mps.create("owner", BODY, "", ports())
    for _ in range(3):
        error_of(lambda: mps.destroy("stranger", {"id": "42", "secret": "guess"}, "9.9.9.9"))
    with pytest.raises(RequestError) as info:
        mps.destroy("stranger", {"id": "42", "secret": "s3cret"}, "9.9.9.9")
    assert "Too many failed attempts" in info.value.reason
    assert mps.destroy("stranger", {"id": "42", "secret": "s3cret"}, "10.0.0.1").id == "42"


def test_private_without_pin_is_invisible_to_others():
    mps = Mountpoints()
    mps.create("owner", {**BODY, "pin": "", "is_private": True}, "", ports())
    assert error_of(lambda: mps.visible("stranger", {"id": "42"}, "")) == StreamingError.NO_SUCH_MOUNTPOINT
    assert mps.visible("stranger", {"id": "42", "secret": "s3cret"}, "").id == "42"
    assert mps.listing("stranger", {}, lambda m: {}) == []
    assert [m["id"] for m in mps.listing("owner", {}, lambda m: {})] == ["42"]


def test_a_gone_creators_mountpoint_is_reclaimed_with_its_pin():
    """The aPuppet agent reconnects with the same id after a network loss; its old session still holds the id."""
    gone: set[str] = set()
    mps = Mountpoints(owner_gone=lambda owner: owner in gone)
    old = mps.create("old-session", BODY, "1.2.3.4", ports())
    mps.take_reports()
    # While the creator is alive nothing is reclaimed, whatever the pin.
    assert mps.reclaim("new-session", BODY, "1.2.3.4") is None
    gone.add("old-session")
    assert mps.reclaim("new-session", {**BODY, "pin": "9999"}, "1.2.3.4") is None
    assert mps.reclaim("new-session", {k: v for k, v in BODY.items() if k != "pin"}, "1.2.3.4") is None
    assert mps.reclaim("new-session", BODY, "1.2.3.4") is old
    assert [name for name, _ in mps.take_reports()] == ["mountpoint_reclaimed", "mountpoint_destroyed"]
    assert mps.create("new-session", BODY, "1.2.3.4", ports()).owner == "new-session"
