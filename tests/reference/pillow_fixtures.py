"""Writes the Pillow reference fixtures for dcgan's Pillow-exact resize (src/data/resize.rs).

Usage: pillow_fixtures.py SRC DST, SRC a folder holding the photos named in PHOTOS, DST the
fixture folder. Run once, from the repository root, with Pillow >= 9 and numpy (the venv
setup.sh makes has both):
    .venv-reference/bin/python tests/reference/pillow_fixtures.py tests/data/faces tests/data/pillow

For each photo it stores only the pixels inside MAIN_BOX (`<stem>.crop.rgb`, raw RGB, as
Pillow decodes the JPEG), which keeps the fixtures small: the Rust test pastes them into a
full-size image whose outside is a fixed pattern (see canvas()), so any read outside the box
fails the test. Each case's expected output is Pillow's `photo.crop(box).resize(size, filter)`
on the *real* photo, saved as raw RGB in `<stem>_<l>_<t>_<r>_<b>_<w>x<h>_<filter>.rgb`; the
first photo gets the extra CASES_FIRST, the others only the project's box.
"""

import sys
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

PHOTOS = ["000053", "002382", "005173", "007770", "010521"]
MAIN_BOX = (30, 55, 150, 175)
FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos3": Image.Resampling.LANCZOS,
}
# (box, (out_w, out_h)); all boxes lie inside MAIN_BOX. Keep in sync with src/data/resize.rs.
CASES_ALL = [(MAIN_BOX, (64, 64))]
CASES_FIRST = [
    ((40, 60, 140, 170), (24, 20)),  # downscale, different factor per axis
    ((70, 100, 90, 125), (24, 30)),  # upscale
    ((50, 70, 74, 170), (24, 16)),  # width unchanged: Pillow skips the horizontal pass
    ((60, 60, 100, 170), (32, 20)),  # height shrinks most: Pillow 13 runs the vertical pass first
]


def canvas(crop: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The Rust test's full-size image: the stored crop inside MAIN_BOX, a pattern outside."""
    w, h = size
    img = (np.arange(h * w * 3) * 7 // 3 % 256).astype(np.uint8).reshape(h, w, 3)
    l, t, r, b = MAIN_BOX
    img[t:b, l:r] = crop
    return img


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: pillow_fixtures.py SRC DST  (e.g. tests/data/faces tests/data/pillow)")
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    dst.mkdir(parents=True, exist_ok=True)
    print("Pillow", PIL.__version__)
    for i, stem in enumerate(PHOTOS):
        photo = Image.open(src / f"{stem}.jpg").convert("RGB")
        crop = np.asarray(photo.crop(MAIN_BOX))
        (dst / f"{stem}.crop.rgb").write_bytes(crop.tobytes())
        fake = Image.fromarray(canvas(crop, photo.size))
        for box, size in CASES_ALL + (CASES_FIRST if i == 0 else []):
            for name, f in FILTERS.items():
                out = photo.crop(box).resize(size, f)
                # Sanity: crop+resize never looks outside the box.
                assert out.tobytes() == fake.crop(box).resize(size, f).tobytes()
                l, t, r, b = box
                path = dst / f"{stem}_{l}_{t}_{r}_{b}_{size[0]}x{size[1]}_{name}.rgb"
                path.write_bytes(out.tobytes())
    total = sum(p.stat().st_size for p in dst.glob("*.rgb"))
    print(f"wrote {len(list(dst.glob('*.rgb')))} files, {total} bytes")


if __name__ == "__main__":
    main()
