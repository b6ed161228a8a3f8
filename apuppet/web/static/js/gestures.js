/**
 * Pointer input on the device picture → `tap` / `swipe` commands, for mouse, pen and touch alike.
 *
 * A press that stays within a few CSS pixels is a tap whose duration is the real hold time, so holding the
 * button is a long press on the device; anything that moves is a swipe from the press point to the release
 * point over the time it took (agents replay only the two end points, spec §5). Right click is Back and the
 * wheel scrolls, as in other remote-control tools.
 */

import * as commands from "./commands.js";
import { toFrame, toStage } from "./geometry.js";

/** Movement (CSS px) below which a press is still a tap: fingers wobble. */
const TAP_SLOP = 6;
const LONG_PRESS_MS = 500;
const WHEEL_IDLE_MS = 120;

export class GestureInput {
  /**
   * @param {HTMLElement} stage element receiving the pointer events (covers the picture)
   * @param {() => object|null} layout the current `geometry.fit` result, null before the video is known
   * @param {(text: string) => void} send sends one command
   * @param {HTMLElement} marks layer for the touch marks
   */
  constructor(stage, layout, send, marks) {
    this.stage = stage;
    this.layout = layout;
    this.send = send;
    this.marks = marks;
    this.active = null;
    this.wheel = null;
    stage.addEventListener("pointerdown", (e) => this._down(e));
    stage.addEventListener("pointermove", (e) => this._move(e));
    stage.addEventListener("pointerup", (e) => this._up(e));
    stage.addEventListener("pointercancel", () => this._cancel());
    stage.addEventListener("lostpointercapture", () => this._cancel());
    stage.addEventListener("contextmenu", (e) => {
      if (this._over(e)) return;
      e.preventDefault();
      // A finger held still also fires contextmenu: that is a long press, already sent as one, not Back.
      if (this.lastPointerType === "mouse") this.send("back");
    });
    stage.addEventListener("wheel", (e) => this._wheel(e), { passive: false });
  }

  _point(e) {
    const rect = this.stage.getBoundingClientRect();
    return { x: e.clientX - rect.left, y: e.clientY - rect.top };
  }

  /** Presses on what lies over the picture (the reconnect/ended dialog and its buttons) are not gestures. */
  _over(e) {
    return e.target !== this.stage && e.target.closest?.("[data-no-gestures]");
  }

  _down(e) {
    this.lastPointerType = e.pointerType;
    if (this._over(e)) return;
    if (!e.isPrimary || (e.pointerType === "mouse" && e.button !== 0)) return;
    const layout = this.layout();
    if (!layout) return;
    const at = this._point(e);
    const frame = toFrame(layout, at.x, at.y);
    if (!frame) return; // on the letterbox bars
    e.preventDefault();
    this.stage.focus({ preventScroll: true });
    this.stage.setPointerCapture(e.pointerId);
    const mark = this._mark(layout, frame);
    this.active = { id: e.pointerId, layout, at, end: at, frame, time: performance.now(), mark };
    this.active.timer = setTimeout(() => mark.classList.add("long"), LONG_PRESS_MS);
  }

  _move(e) {
    if (!this.active || e.pointerId !== this.active.id) return;
    this.active.end = this._point(e);
    const { mark, layout } = this.active;
    const end = toFrame(layout, this.active.end.x, this.active.end.y, { clamp: true });
    if (this._moved()) {
      clearTimeout(this.active.timer);
      mark.classList.remove("long");
      this._place(mark, layout, end);
    }
  }

  _moved() {
    const { at, end } = this.active;
    return Math.abs(end.x - at.x) > TAP_SLOP || Math.abs(end.y - at.y) > TAP_SLOP;
  }

  _up(e) {
    if (!this.active || e.pointerId !== this.active.id) return;
    this.active.end = this._point(e);
    const { layout, frame, time, mark } = this.active;
    const duration = Math.round(performance.now() - time);
    if (this._moved()) {
      const end = toFrame(layout, this.active.end.x, this.active.end.y, { clamp: true });
      this.send(commands.swipe(frame.x, frame.y, end.x, end.y, Math.max(duration, 50)));
    } else {
      this.send(commands.tap(frame.x, frame.y, duration));
    }
    this._finish(mark);
  }

  _cancel() {
    if (!this.active) return;
    this._finish(this.active.mark);
  }

  _finish(mark) {
    clearTimeout(this.active?.timer);
    this.active = null;
    mark.classList.add("done");
    setTimeout(() => mark.remove(), 400);
  }

  _mark(layout, frame) {
    const mark = document.createElement("div");
    mark.className = "touch-mark";
    this._place(mark, layout, frame);
    this.marks.append(mark);
    return mark;
  }

  _place(mark, layout, frame) {
    const p = toStage(layout, frame.x, frame.y);
    mark.style.left = `${p.x}px`;
    mark.style.top = `${p.y}px`;
  }

  /** Wheel notches gathered for a moment become one swipe, so a scroll does not flood the device. */
  _wheel(e) {
    if (this._over(e)) return;
    const layout = this.layout();
    if (!layout) return;
    const at = this._point(e);
    const frame = toFrame(layout, at.x, at.y);
    if (!frame) return;
    e.preventDefault();
    const lineHeight = e.deltaMode === 1 ? 40 : e.deltaMode === 2 ? layout.height : 1;
    if (!this.wheel) this.wheel = { frame, dy: 0 };
    this.wheel.dy += e.deltaY * lineHeight;
    clearTimeout(this.wheel.timer);
    this.wheel.timer = setTimeout(() => this._flushWheel(layout), WHEEL_IDLE_MS);
  }

  _flushWheel(layout) {
    const { frame, dy } = this.wheel;
    this.wheel = null;
    const limit = layout.height / 3;
    // Wheel down = content up = finger moving up; the frame is in device pixels whatever the view rotation.
    const distance = Math.max(-limit, Math.min(limit, dy / layout.scale));
    if (Math.abs(distance) < 2) return;
    const y2 = Math.min(layout.height - 1, frame.y - distance);
    this.send(commands.swipe(frame.x, frame.y, frame.x, y2, 250));
  }
}
