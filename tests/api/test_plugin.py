"""`Intents`: a request waiting (for the WebRTC stack) learns whether a later request took it back."""

from __future__ import annotations

from apuppet.api.plugin import Intents


def test_a_request_is_wanted_until_taken_back_or_replaced() -> None:
    intents = Intents()
    first = intents.begin("handle")
    assert intents.end("handle", first) is True
    assert not intents  # done: nothing kept

    taken = intents.begin("handle")
    intents.take_back("handle")
    assert intents.end("handle", taken) is False

    older = intents.begin("handle")
    newer = intents.begin("handle")  # the same request again replaces the first
    assert intents.end("handle", older) is False
    assert len(intents) == 1
    assert intents.end("handle", newer) is True
    assert not intents

    intents.take_back("never began")  # a hangup with nothing under way
    assert not intents
