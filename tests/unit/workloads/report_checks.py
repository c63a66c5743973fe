"""Checks shared by the report tests: every plot is a real, decodable, non-blank PNG without a version stamp."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from matplotlib.image import imread

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_pngs(paths: dict[str, Path], keys: Iterable[str], *, min_height: int, min_width: int,
                min_std: float) -> None:  # fmt: skip
    for key in keys:
        path = paths[key]
        assert path.name == f"{key}.png"
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000, key
        assert b"Matplotlib version" not in data, key
        image = imread(path)
        height, width = image.shape[:2]
        assert image.ndim == 3 and image.shape[2] in (3, 4)
        assert min_height <= height <= 3000 and min_width <= width <= 3000, (key, image.shape)
        assert image[..., :3].std() > min_std, key  # something is drawn, not a blank canvas
