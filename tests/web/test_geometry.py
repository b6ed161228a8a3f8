"""Pointer → video pixel mapping (js/geometry.js) with letterboxing and rotation, run in Chromium."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from .modules import call, serve_static


@pytest.fixture
def js(page: Page) -> Page:
    serve_static(page)
    return page


def to_frame(js: Page, box: tuple[float, float], frame: tuple[int, int], rotation: int, points: list, clamp=False):
    return call(
        js,
        "geometry.js",
        "const l = m.fit(arg.box[0], arg.box[1], arg.frame[0], arg.frame[1], arg.rotation);"
        "return arg.points.map(([x, y]) => m.toFrame(l, x, y, {clamp: arg.clamp}));",
        {"box": box, "frame": frame, "rotation": rotation, "points": points, "clamp": clamp},
    )


def test_portrait_phone_in_a_wide_window_is_pillarboxed(js: Page) -> None:
    # 360x640 scaled into 1000x800: scale 1.25, picture 450 px wide, bars of 275 px left and right.
    layout = call(js, "geometry.js", "return m.fit(1000, 800, 360, 640, 0);")
    assert layout["scale"] == pytest.approx(1.25)
    assert layout["left"] == pytest.approx(275)
    assert layout["top"] == pytest.approx(0)
    got = to_frame(js, (1000, 800), (360, 640), 0, [[275, 0], [724.9, 799.9], [500, 400], [100, 400], [900, 10]])
    assert got[:3] == [{"x": 0, "y": 0}, {"x": 359, "y": 639}, {"x": 180, "y": 320}]
    assert got[3] is None and got[4] is None  # on the bars: not a touch


def test_clamp_pulls_a_swipe_end_onto_the_picture(js: Page) -> None:
    got = to_frame(js, (1000, 800), (360, 640), 0, [[100, 400], [2000, -50]], clamp=True)
    assert got == [{"x": 0, "y": 320}, {"x": 359, "y": 0}]


@pytest.mark.parametrize(
    ("rotation", "corner", "expected"),
    [
        # The frame's top-left pixel (0,0) is shown at these corners of the turned picture.
        (90, "top-right", {"x": 0, "y": 0}),
        (180, "bottom-right", {"x": 0, "y": 0}),
        (270, "bottom-left", {"x": 0, "y": 0}),
        (90, "bottom-left", {"x": 359, "y": 639}),
    ],
)
def test_rotation_maps_back_to_frame_pixels(js: Page, rotation: int, corner: str, expected: dict) -> None:
    # 360x640 turned sideways is 640x360 on screen; in a 640x360 box the scale is exactly 1.
    w, h = (640, 360) if rotation % 180 else (360, 640)
    points = {"top-right": [w - 0.5, 0.5], "bottom-right": [w - 0.5, h - 0.5], "bottom-left": [0.5, h - 0.5]}
    got = to_frame(js, (w, h), (360, 640), rotation, [points[corner]])
    assert got == [expected]


def test_stage_and_frame_mappings_are_inverse(js: Page) -> None:
    ok = call(
        js,
        "geometry.js",
        "const out = [];"
        "for (const r of [0, 90, 180, 270]) {"
        "  const l = m.fit(777, 555, 368, 800, r);"
        "  for (const [x, y] of [[0, 0], [367, 799], [100, 700], [250, 13]]) {"
        "    const s = m.toStage(l, x, y); const f = m.toFrame(l, s.x, s.y);"
        "    out.push(f.x === x && f.y === y);"
        "  }"
        "}"
        "return out;",
    )
    assert all(ok) and len(ok) == 16
