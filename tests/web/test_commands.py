"""The page's command grammar (js/commands.js), run in Chromium and cross-checked with the agent's parser."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from apuppet.agent import commands as agent_commands

from .modules import call, serve_static


@pytest.fixture
def js(page: Page) -> Page:
    serve_static(page)
    return page


def test_every_percent_and_comma_is_escaped(js: Page) -> None:
    text = "a,b,,c%d%%, 100% done"
    encoded = call(js, "commands.js", "return m.paste(arg);", text)
    assert encoded == "paste,a%2Cb%2C%2Cc%25d%25%25%2C 100%25 done"
    assert encoded.count(",") == 1
    assert agent_commands.parse(encoded) == agent_commands.Paste(text)
    assert call(js, "commands.js", "return m.unescapeText(m.escapeText(arg));", text) == text


@pytest.mark.parametrize("key", ["a", ",", "%", "Enter", "Backspace", "ArrowLeft", "é"])
def test_keys_reach_the_agent_unchanged(js: Page, key: str) -> None:
    encoded = call(js, "commands.js", "return m.key(arg);", key)
    assert agent_commands.parse(encoded) == agent_commands.Key(key)


def test_gestures_are_integers_the_agent_accepts(js: Page) -> None:
    tap, long_press, swipe = call(
        js,
        "commands.js",
        "return [m.tap(10.4, 20.6, 80.2), m.tap(5, 6, 1200), m.swipe(100.2, 300.7, -4, 20, 250)];",
    )
    assert tap == "tap,10,21,80"
    assert agent_commands.parse(tap) == agent_commands.Tap(10, 21, 80)
    assert agent_commands.parse(long_press) == agent_commands.Tap(5, 6, 1200)
    # aPuppet clamps a negative end point to 0; the start is where the finger really went down.
    assert agent_commands.parse(swipe) == agent_commands.Swipe(100, 301, 0, 20, 250)


def test_device_messages_are_parsed_and_unknown_ones_tolerated(js: Page) -> None:
    parsed = call(
        js,
        "commands.js",
        "return arg.map((t) => m.parse(t));",
        [
            "pong,1700000000123",
            "streamingVideoResolution,368,800",
            "streamingVideoResolution,800,368,90",
            "StreamingVideoResolution,800,368,-90",
            "copy,one%2C two%25, three",
            "copy,a%2Cb,c",
            "somethingNew,1,2",
            "streamingVideoResolution,x,y",
            "pong,abc",
        ],
    )
    assert parsed[0] == {"verb": "pong", "timestamp": 1700000000123}
    assert parsed[1] == {"verb": "resolution", "width": 368, "height": 800, "rotation": 0}
    assert parsed[2]["rotation"] == 90
    assert parsed[3]["rotation"] == 270
    assert parsed[4] == {"verb": "copy", "text": "one, two%, three"}
    # aPuppet's first-only escaping still decodes: the raw commas after it belong to the text.
    assert parsed[5] == {"verb": "copy", "text": "a,b,c"}
    assert [p["verb"] for p in parsed[6:]] == ["unknown", "unknown", "unknown"]


def test_the_agent_copy_text_decodes_in_the_page(js: Page) -> None:
    text = "100%, really, 50%2C"
    wire = str(agent_commands.Copy(text))
    assert call(js, "commands.js", "return m.parse(arg).text;", wire) == text


def test_only_printable_and_editing_keys_are_forwarded(js: Page) -> None:
    result = call(
        js,
        "commands.js",
        "return arg.map((e) => m.forwardableKey(e));",
        [
            {"key": "a"},
            {"key": "Enter"},
            {"key": "F5"},
            {"key": "Shift"},
            {"key": "c", "ctrlKey": True},
            {"key": "Tab"},
            {"key": "😀"},
        ],
    )
    assert result == [True, True, False, False, False, False, True]
