/**
 * Where the device picture sits in the page, and which video pixel a pointer is on.
 *
 * Agents want X,Y in pixels of the streamed frame (spec §5). The frame is scaled to fit the stage (letterboxed,
 * never stretched) and may be turned by a multiple of 90°, so a pointer position has to be mapped back through
 * both. Pure functions: the page and the tests use the same arithmetic.
 */

/** Fit a `width`×`height` frame turned by `rotation` degrees clockwise into a `boxWidth`×`boxHeight` stage. */
export function fit(boxWidth, boxHeight, width, height, rotation = 0) {
  const sideways = rotation % 180 !== 0;
  const shownWidth = sideways ? height : width;
  const shownHeight = sideways ? width : height;
  const scale = Math.max(0, Math.min(boxWidth / shownWidth, boxHeight / shownHeight)) || 0;
  return {
    scale,
    rotation,
    width,
    height,
    // The picture's box on the stage, after rotation.
    left: (boxWidth - shownWidth * scale) / 2,
    top: (boxHeight - shownHeight * scale) / 2,
    shownWidth: shownWidth * scale,
    shownHeight: shownHeight * scale,
  };
}

/**
 * Stage coordinates (CSS px from the stage's top-left) → frame pixels, or `null` outside the picture
 * (the letterbox bars). With `clamp`, points outside are pulled onto the nearest edge instead, which is what a
 * swipe that leaves the picture needs.
 */
export function toFrame(layout, x, y, { clamp = false } = {}) {
  const { scale, rotation, width, height } = layout;
  if (!scale) return null;
  let u = (x - layout.left) / scale;
  let v = (y - layout.top) / scale;
  const sideways = rotation % 180 !== 0;
  const shownWidth = sideways ? height : width;
  const shownHeight = sideways ? width : height;
  if (u < 0 || v < 0 || u >= shownWidth || v >= shownHeight) {
    if (!clamp) return null;
    u = Math.min(Math.max(u, 0), shownWidth - 0.5);
    v = Math.min(Math.max(v, 0), shownHeight - 0.5);
  }
  let fx;
  let fy;
  switch (rotation) {
    case 90:
      fx = v;
      fy = height - u;
      break;
    case 180:
      fx = width - u;
      fy = height - v;
      break;
    case 270:
      fx = width - v;
      fy = u;
      break;
    default:
      fx = u;
      fy = v;
  }
  return {
    x: Math.min(Math.max(Math.floor(fx), 0), width - 1),
    y: Math.min(Math.max(Math.floor(fy), 0), height - 1),
  };
}

/** Frame pixels → stage coordinates (the centre of that pixel): where to draw the touch mark. */
export function toStage(layout, fx, fy) {
  const { scale, rotation, width, height } = layout;
  const cx = fx + 0.5;
  const cy = fy + 0.5;
  let u;
  let v;
  switch (rotation) {
    case 90:
      u = height - cy;
      v = cx;
      break;
    case 180:
      u = width - cx;
      v = height - cy;
      break;
    case 270:
      u = cy;
      v = width - cx;
      break;
    default:
      u = cx;
      v = cy;
  }
  return { x: layout.left + u * scale, y: layout.top + v * scale };
}
