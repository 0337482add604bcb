#!/usr/bin/env python3
"""Pastes class grids (`coalesce generate --class-grid`, one row per class prompt) side by side
under a title each, into one picture: `make demo`'s opening comparison.

Usage: demo-compare.py OUT.png "TITLE|SUBTITLE=GRID.png" ...
"""
import sys

from PIL import Image, ImageDraw, ImageFont


def font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, panels = sys.argv[1], []
    for arg in sys.argv[2:]:
        title, _, path = arg.rpartition("=")
        if not title:
            sys.exit("demo-compare: expected TITLE=GRID.png, got %r" % arg)
        panels.append((title.split("|"), Image.open(path).convert("RGB")))
    head, gap = 44, 16
    width = sum(p.width for _, p in panels) + gap * (len(panels) - 1)
    height = head + max(p.height for _, p in panels)
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    x = 0
    for lines, grid in panels:
        for i, line in enumerate(lines[:2]):
            draw.text((x + 2, 4 + 18 * i), line, fill=(0, 0, 0) if i == 0 else (90, 90, 90), font=font(14 if i == 0 else 12))
        img.paste(grid, (x, head))
        x += grid.width + gap
    img.save(out)
    print("wrote %s: %d models side by side" % (out, len(panels)))


if __name__ == "__main__":
    main()
