"""Terminal plots in plain text: a histogram of values with the expected density overlaid.

Pure Python (no torch), so any command can use it; colour is left to the console that prints it (rich's
``Console`` honours NO_COLOR).
"""

import itertools
from collections.abc import Sequence

__all__ = ["render_histogram"]

_EIGHTHS = " ▏▎▍▌▋▊▉"
_MARK = "┃"


def _bar(length: float) -> str:
    """A bar of ``length`` character cells, drawn with eighth-block characters."""
    eighths = max(0, round(length * 8))
    full, rest = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[rest] if rest else "")


def _label(value: float) -> str:
    return f"{value:.4g}"


def render_histogram(
    counts: Sequence[float], edges: Sequence[float], density: Sequence[float], width: int = 50
) -> str:
    """Render a horizontal histogram with the expected count of each bin marked by ``┃``.

    Args:
        counts: Observed count of each bin.
        edges: Bin edges, ``len(counts) + 1`` increasing values.
        density: Expected density (probability per unit of value) at each bin's centre; the marker sits at
            ``density * bin_width * sum(counts)``, the count a bin of that width should get.
        width: Width of the longest bar in character cells.

    Returns:
        One line per bin, ``[low, high)  bar  count``, joined with newlines (no trailing newline).

    Raises:
        ValueError: If the lengths do not match or ``width`` < 1.
    """
    if len(edges) != len(counts) + 1 or len(density) != len(counts):
        raise ValueError(
            f"render_histogram: {len(counts)} counts need {len(counts) + 1} edges and as many densities"
            f" as counts, got {len(edges)} edges and {len(density)} densities"
        )
    if width < 1:
        raise ValueError(f"render_histogram: width={width} must be >= 1")
    total = sum(counts)
    expected = [d * (hi - lo) * total for d, lo, hi in zip(density, edges[:-1], edges[1:], strict=True)]
    top = max([*counts, *expected, 1e-300])
    labels = [f"[{_label(lo)}, {_label(hi)})" for lo, hi in itertools.pairwise(edges)]
    pad = max((len(s) for s in labels), default=0)
    count_pad = max((len(f"{c:g}") for c in counts), default=1)
    lines = []
    for label, count, exp in zip(labels, counts, expected, strict=True):
        cells = list(_bar(count / top * width).ljust(width + 1))
        mark = min(width, round(exp / top * width))
        cells[mark] = _MARK
        lines.append(f"{label.ljust(pad)} {''.join(cells)} {count:>{count_pad}g}")
    return "\n".join(lines)
