"""The virtual phone: every command changes the picture where a test (or a person) can see it."""

import numpy as np

from apuppet.agent import phone as ph
from apuppet.agent.phone import APPS, Phone


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def mean(img: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    return img[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0)


def close(color, expected, tol=12) -> bool:
    return bool(np.all(np.abs(np.asarray(color) - np.asarray(expected)) <= tol))


def test_home_screen_shows_the_app_icons():
    p = Phone()
    img = p.render()
    assert img.shape == (ph.HEIGHT, ph.WIDTH, 3) and img.dtype == np.uint8
    for color, x in zip(APPS.values(), ph.ICON_XS, strict=True):
        assert close(mean(img, x + 20, ph.ICON_Y + 20, x + 50, ph.ICON_Y + 50), color)
    assert close(mean(img, 10, 300, 60, 400), ph.WALLPAPER)


def test_counter_tap_and_long_press():
    clock = Clock()
    p = Phone(clock)
    p.tap(70, 150)
    assert p.screen == "counter"
    blocks = lambda img: mean(img, 30, 450, 52, 472)  # noqa: E731
    clock.now += 5
    assert close(blocks(p.render()), (250, 240, 225))
    p.tap(*ph.COUNTER_CENTER)
    assert p.counter == 1
    clock.now += 5
    assert close(blocks(p.render()), (200, 90, 0))
    p.tap(*ph.COUNTER_CENTER, duration=800)
    assert p.counter == 0 and p.bubble == ph.COUNTER_CENTER
    img = p.render()
    assert close(mean(img, 200, 332, 310, 344), ph.BUBBLE)


def test_notes_keys_paste_and_copy():
    p = Phone()
    copied = []
    p.on_clipboard = copied.append
    p.tap(180, 150)
    assert p.screen == "notes"
    before = p.render()
    for k in "Hi,":
        p.key(k)
    p.key("Backspace")
    p.key("Enter")
    p.paste("50% done")
    assert p.text == "Hi\n50% done"
    after = p.render()
    field = (slice(ph.NOTES_FIELD[1] + 4, ph.NOTES_FIELD[3] - 4), slice(ph.NOTES_FIELD[0] + 4, ph.NOTES_FIELD[2] - 4))
    assert np.abs(after[field].astype(int) - before[field]).mean() > 1
    p.tap(60, 340)
    assert copied == ["Hi\n50% done"]
    assert p.clipboard == "Hi\n50% done"


def test_paste_does_not_report_a_copy():
    p = Phone()
    copied = []
    p.on_clipboard = copied.append
    p.paste("secret")
    assert copied == [] and p.clipboard == "secret"


def test_list_scrolls_with_swipes_and_clamps():
    p = Phone()
    p.tap(290, 150)
    assert p.screen == "list"
    row = lambda img: mean(img, 10, 200, 50, 210)  # noqa: E731
    first = row(p.render())
    p.swipe(180, 500, 180, 200, 300)
    assert p.scroll == 300
    assert not close(row(p.render()), first)
    p.swipe(180, 100, 180, 600, 300)
    assert p.scroll == 0
    for _ in range(50):
        p.swipe(180, 590, 180, 40, 100)
    assert p.scroll == p._max_scroll()


def test_navigation_back_home_recents_notifications():
    p = Phone()
    p.tap(70, 150)
    p.global_action("back")
    assert p.screen == "home"
    p.tap(180, 150)
    p.global_action("recents")
    img = p.render()
    assert p.overlay == "recents"
    assert close(mean(img, 40, 90, 300, 200), APPS["notes"])  # most recent first
    assert close(mean(img, 40, 240, 300, 350), APPS["counter"])
    p.tap(100, 300)  # the Counter card
    assert (p.screen, p.overlay) == ("counter", None)
    p.global_action("notifications")
    assert close(mean(p.render(), 0, 200, 360, 280), ph.SHADE_BG, tol=20)
    p.global_action("back")
    assert p.overlay is None and p.screen == "counter"
    p.global_action("home")
    assert p.screen == "home"


def test_nav_bar_taps_and_status_bar_swipe():
    p = Phone()
    p.tap(70, 150)
    p.tap(60, ph.HEIGHT - 10)  # the back triangle
    assert p.screen == "home"
    p.tap(300, ph.HEIGHT - 10)
    assert p.overlay == "recents"
    p.global_action("home")
    p.swipe(180, 5, 180, 300, 200)
    assert p.overlay == "notifications"
    p.swipe(180, 250, 180, 50, 200)
    assert p.overlay is None


def test_touch_mark_shows_then_fades():
    clock = Clock()
    p = Phone(clock)
    p.tap(200, 500)
    assert close(p.render()[500, 200 + 10], ph.MARK, tol=40)
    key = p.frame_key()
    clock.now += ph.MARK_SECONDS + 0.1
    assert p.frame_key() != key
    assert close(p.render()[500, 210], ph.WALLPAPER)


def near_toast(img: np.ndarray) -> bool:
    top = ph.HEIGHT - ph.NAV_BAR - 56
    return close(mean(img, 147, top + 12, 151, top + 20), ph.TOAST)


def test_frame_key_changes_only_with_the_picture():
    clock = Clock()
    p = Phone(clock)
    key = p.frame_key()
    assert p.frame_key() == key
    clock.now += 0.2 if int(clock.now + 0.2) == int(clock.now) else 0
    assert p.frame_key() == key
    p.key("a")  # no text field on the home screen: a toast says what arrived
    assert p.frame_key() != key
    assert near_toast(p.render())
    key = p.frame_key()
    clock.now += ph.TOAST_SECONDS + 0.01
    assert p.frame_key() != key and not near_toast(p.render())
    key = p.frame_key()
    p.global_action("recents")
    assert p.frame_key() != key
    key = p.frame_key()
    clock.now += 1
    assert p.frame_key() != key  # the clock's second


def test_out_of_screen_coordinates_are_clamped():
    """A viewer's click outside the picture (letterbox, rounding) acts at the nearest edge of the screen."""
    p = Phone()
    p.tap(70, 150)
    assert p.screen == "counter"
    # Far below and left of the screen: the nearest point is the nav bar's left third, Back. Unclamped, x // third
    # would be negative and pick the last button (Recents).
    p.tap(-50, 10_000)
    assert (p.screen, p.overlay) == ("home", None)
    assert (p.marks[-1].x, p.marks[-1].y) == (0, ph.HEIGHT - 1)

    p.swipe(-1, -1, 99_999, 99_999, 10)
    m = p.marks[-1]
    assert (m.x0, m.y0, m.x, m.y) == (0, 0, ph.WIDTH - 1, ph.HEIGHT - 1)
    img = p.render()
    # The trace runs corner to corner of the screen, so its middle is the screen's middle.
    assert close(mean(img, ph.WIDTH // 2 - 1, ph.HEIGHT // 2 - 1, ph.WIDTH // 2 + 1, ph.HEIGHT // 2 + 1), ph.MARK, 40)
