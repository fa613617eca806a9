"""A grid of images with captions, for people to look at (pure numpy + OpenCV, no ROS).

sheet = contact_sheet([[input0, overlay0], [input1, overlay1]], column_titles=["input", "overlay"])
cv2.imwrite("sheet.png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def _fit(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Resize (keeping aspect, letterboxed on black) to exactly (h, w, 3) uint8 RGB."""
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    ih, iw = img.shape[:2]
    s = min(h / ih, w / iw)
    nh, nw = max(1, round(ih * s)), max(1, round(iw * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_NEAREST
    small = cv2.resize(np.ascontiguousarray(img), (nw, nh), interpolation=interp)
    out = np.zeros((h, w, 3), np.uint8)
    y, x = (h - nh) // 2, (w - nw) // 2
    out[y : y + nh, x : x + nw] = small
    return out


def _caption(tile: np.ndarray, text: str) -> None:
    if not text:
        return
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    cv2.rectangle(tile, (0, 0), (min(tile.shape[1], tw + 8), th + base + 6), (0, 0, 0), -1)
    cv2.putText(tile, text, (4, th + 3), font, scale, (255, 255, 255), thick, cv2.LINE_AA)


def contact_sheet(
    rows: Sequence[Sequence[np.ndarray]],
    *,
    tile_size: tuple[int, int] = (240, 320),
    column_titles: Sequence[str] = (),
    row_titles: Sequence[str] = (),
    gap: int = 4,
) -> np.ndarray:
    """(H, W, 3) uint8 RGB grid: one row per entry of ``rows``, tiles resized to ``tile_size``
    (h, w). The first row's tiles carry the column titles, each row's first tile its row title."""
    if not rows or not any(len(r) for r in rows):
        raise ValueError("contact_sheet needs at least one image")
    th, tw = tile_size
    ncols = max(len(r) for r in rows)
    sheet = np.full((len(rows) * (th + gap) + gap, ncols * (tw + gap) + gap, 3), 32, np.uint8)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            tile = _fit(img, th, tw)
            parts = []
            if r == 0 and c < len(column_titles):
                parts.append(column_titles[c])
            if c == 0 and r < len(row_titles):
                parts.append(row_titles[r])
            _caption(tile, " | ".join(parts))
            y, x = gap + r * (th + gap), gap + c * (tw + gap)
            sheet[y : y + th, x : x + tw] = tile
    return sheet


def write_png(path, rgb: np.ndarray) -> None:
    """Write an RGB array as PNG (OSError when it cannot be written)."""
    if not cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
