"""How many output tiles the chunked attention ops process at once."""
import operator
from typing import Optional, Tuple

# Elements of the largest per-chunk buffer of the torch window attention (scores [B, heads,
# tiles, pixels, union] or gathered values [B, tiles, union, C]); 2**24 float32 = 64 MiB, a
# few such buffers live at once.
DEFAULT_CHUNK_ELEMENTS = 2 ** 24


def check_chunk_size(max_pixels_per_chunk) -> Optional[int]:
    """``None`` or a positive integer (Python, numpy or 0-d torch integer), else ValueError."""
    if max_pixels_per_chunk is None:
        return None
    try:
        if isinstance(max_pixels_per_chunk, bool):
            raise TypeError
        value = operator.index(max_pixels_per_chunk)
    except TypeError:
        value = None
    if value is None or value < 1:
        raise ValueError(f"max_pixels_per_chunk must be None or a positive integer, got {max_pixels_per_chunk!r}")
    return value


def tiles_per_chunk(grid: Tuple[int, int], per_tile_pixels: int, per_tile_elements: int,
                    max_pixels_per_chunk: Optional[int] = None,
                    max_elements: int = DEFAULT_CHUNK_ELEMENTS) -> Tuple[int, int]:
    """(tile rows, tile columns) per chunk of a grid of (rows, cols) tiles.

    The chunk holds at most ``max_pixels_per_chunk`` output pixels if given, else at most
    ``max_elements`` buffer entries (``per_tile_elements`` per tile); whole tile rows when
    they fit, else part of one tile row; at least one tile.
    """
    max_pixels_per_chunk = check_chunk_size(max_pixels_per_chunk)
    if max_pixels_per_chunk is not None:
        budget = max_pixels_per_chunk // per_tile_pixels
    else:
        budget = max_elements // max(per_tile_elements, 1)
    rows, cols = grid
    if budget >= cols:
        return min(rows, budget // cols), cols
    return 1, max(1, budget)
