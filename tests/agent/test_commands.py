import pytest

from apuppet.agent import commands
from apuppet.agent.commands import (
    CommandError,
    Copy,
    GlobalAction,
    Key,
    Paste,
    Ping,
    Pong,
    Resolution,
    Swipe,
    Tap,
    escape,
    parse,
    unescape,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("tap,10,20,50", Tap(10, 20, 50)),
        ("TAP,10,20,900", Tap(10, 20, 900)),
        ("swipe,1,2,3,4,500", Swipe(1, 2, 3, 4, 500)),
        ("swipe,500,200,0,200,500", Swipe(500, 200, 0, 200, 500)),
        ("back", GlobalAction("back")),
        ("Home", GlobalAction("home")),
        ("recents", GlobalAction("recents")),
        ("notifications", GlobalAction("notifications")),
        ("key,a", Key("a")),
        ("key,Enter", Key("Enter")),
        ("key,%2C", Key(",")),
        ("key,%25", Key("%")),
        ("paste,hello world", Paste("hello world")),
        ("copy,x%2Cy", Copy("x,y")),
        ("ping,1700000000000", Ping("1700000000000")),
        ("pong,1700000000000", Pong("1700000000000")),
        ("streamingVideoResolution,360,640", Resolution(360, 640)),
        ("streamingVideoResolution,640,360,90", Resolution(640, 360, 90)),
    ],
)
def test_parse(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize(
    "command",
    [
        Tap(0, 0, 0),
        Tap(359, 639, 1500),
        Swipe(10, 600, 10, 100, 300),
        GlobalAction("back"),
        Key(","),
        Key("%"),
        Key("Backspace"),
        Paste("50%, then 100%,,%2C literally"),
        Copy(",,,%%%"),
        Copy(""),
        Ping("12"),
        Pong("12"),
        Resolution(368, 800),
        Resolution(800, 368, 270),
    ],
)
def test_round_trip(command):
    assert parse(str(command)) == command


def test_escape_every_occurrence():
    assert escape("a,b,c%d%") == "a%2Cb%2Cc%25d%25"
    assert unescape(escape("a,b,c%d%")) == "a,b,c%d%"


def test_decodes_first_only_escaping_of_old_web_admin():
    # aPuppet's web-admin escapes only the first '%' and the first ','.
    assert parse("paste,a%2Cb,c").text == "a,b,c"
    assert parse("paste,50%25 and 100%").text == "50% and 100%"
    assert parse("copy,%25%2C%2c,%,%zz").text == "%,,,%,%zz"


def test_unknown_escapes_stay():
    assert unescape("%41%2") == "%41%2"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "tap",
        "tap,1,2",
        "tap,1,2,3,4",
        "tap,a,2,3",
        "tap,1.5,2,3",
        "tap,1,2,-3",
        "tap,1,2,99999999",
        "tap,1,2,3000000000",
        "swipe,1,2,3,4",
        "swipe,1,2,3,4,5,6",
        "back,1",
        "fly,1,2",
        "stop,1,2,3,4,5",
        "key,",
        "key,ab",
        "key,Escape",
        "ping,",
        "ping,1,2",
        'ping,1"}',
        "streamingVideoResolution,0,10",
        "streamingVideoResolution,10",
        "paste," + "x" * (commands.MAX_TEXT + 1),
    ],
)
def test_malformed_is_rejected(text):
    with pytest.raises(CommandError):
        parse(text)


def test_non_string_is_rejected():
    with pytest.raises(CommandError):
        parse(12)  # type: ignore[arg-type]
