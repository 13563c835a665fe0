"""``pareto.png``: quality against latency at the primary setting (each row on the runtime it ships
on), p10–p90 latency bars and ± one standard error of the quality where measured, marker area by
bytes on disk, colour by route, the recommended rows ringed, and every point labelled without two
labels overlapping (a small search over offsets around each point, with a leader line when a label
had to move away)."""

from __future__ import annotations

import io
import math

from torchslim.report.rows import human_bytes, quality
from torchslim.report.view import accuracy_se, latency_band, number, picks, row_id

# route -> colour; a row's route is its families (structural, distillation, both, neither)
ROUTES = {("structural",): ("structural", "tab:blue"), ("distillation",): ("distilled", "tab:green"),
          ("distillation", "structural"): ("both", "tab:purple"), (): ("neither (baseline)", "tab:gray")}
TARGET_MARKERS = ["o", "s", "^", "D", "v", "P"]
FONT = 8
# Offsets tried for a label, nearest first: distances beyond the marker's radius (points) and
# directions (degrees, the upper right first: the eye reads it as belonging to the point).
_DISTANCES = (3, 12, 24, 40, 60, 85)
_ANGLES = (45, 135, -45, -135, 0, 180, 90, -90, 22, 158, -22, -158, 68, 112, -68, -112)


def _route(row: dict) -> tuple[str, str]:
    return ROUTES.get(tuple(sorted(row.get("families") or [])), ROUTES[()])


def _area(n_bytes: float, biggest: float) -> float:
    return 40 + 900 * math.sqrt(max(n_bytes, 0) / (biggest or 1))


def plotted_rows(matrix: dict) -> list[dict]:
    """The rows drawn: measured, with a quality and a latency at the primary setting."""
    p = matrix["primary"]
    return [r for r in matrix["rows"] if r["status"] == "ok" and number(r.get("accuracy")) is not None
            and number((r.get("latency") or {}).get(p)) is not None]


def front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other beats on both latency (lower) and quality (higher), by latency."""
    keep = [i for i, (x, y) in enumerate(points)
            if not any(ox <= x and oy >= y and (ox < x or oy > y) for ox, oy in points)]
    return sorted(keep, key=lambda i: points[i][0])


def _ms(value: float, _pos: int | None = None) -> str:
    return f"{value:g}"


def _latency_axis(ax, xs: list[float]) -> None:
    """Log scale when the latencies span more than 4×, with plain millisecond tick labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    if xs and max(xs) / max(min(xs), 1e-12) > 4:
        ax.set_xscale("log")
        lo, hi = min(xs), max(xs)
        ax.set_xlim(lo / 1.35, hi * 1.35)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=8))
    ax.xaxis.set_major_formatter(FuncFormatter(_ms))


def _overlap(box, boxes) -> float:
    """The area of ``box`` (x0, y0, x1, y1) shared with the rows of ``boxes`` (N × 4), summed."""
    import numpy as np

    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    w = np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0])
    h = np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1])
    return float(np.sum(np.clip(w, 0, None) * np.clip(h, 0, None)))


def _around(x: float, y: float, half_w: float, half_h: float) -> tuple[float, float, float, float]:
    return (x - half_w, y - half_h, x + half_w, y + half_h)


def _line_boxes(ax, line: list[tuple[float, float]]) -> list:
    """Small boxes every 4 px along a polyline (data coordinates), so labels keep off it."""
    boxes = []
    pts = [ax.transData.transform(p) for p in line]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        steps = max(int(math.hypot(x1 - x0, y1 - y0) / 4), 1)
        boxes += [_around(x0 + (x1 - x0) * k / steps, y0 + (y1 - y0) * k / steps, 1.5, 1.5)
                  for k in range(steps + 1)]
    return boxes


def place_labels(ax, renderer, points: list[tuple[float, float]], names: list[str], radii: list[float],
                 avoid: list[tuple[float, float]] = ()) -> list:
    """Label every point with its name, each at the first offset whose text box overlaps no placed
    label, no marker (``radii`` in points) and no segment of the polyline ``avoid``, and stays inside
    the axes (else at the offset that overlaps least); labels set away from their marker get a thin
    leader line. Returns the annotations, in point order."""
    scale = renderer.points_to_pixels(1.0)
    display = [ax.transData.transform(p) for p in points]
    markers = [_around(x, y, r * scale, r * scale) for (x, y), r in zip(display, radii, strict=True)]
    obstacles = markers + _line_boxes(ax, list(avoid))
    f = ax.get_window_extent(renderer)
    frame = (f.x0, f.y0, f.x1, f.y1)
    placed, labels = [], [None] * len(points)
    # the most crowded points choose first, while there is still room next to them
    order = sorted(range(len(points)), key=lambda i: -_overlap(
        _around(*display[i], 3 * radii[i] * scale, 3 * radii[i] * scale), markers))
    for i in order:
        ann, box, dist = _place_one(ax, renderer, points[i], names[i], radii[i], placed, obstacles, frame)
        placed.append(box)
        labels[i] = ann
        if dist > _DISTANCES[0]:
            _leader(ax, display[i], box, radii[i] * scale)
    return labels


def _candidates(radius: float):
    """``(distance, offset in points, ha, va)`` of each place a label may go, nearest first."""
    for dist in _DISTANCES:
        for angle in _ANGLES:
            dx, dy = math.cos(math.radians(angle)), math.sin(math.radians(angle))
            yield (dist, ((radius + dist) * dx, (radius + dist) * dy),
                   "left" if dx > 0.3 else "right" if dx < -0.3 else "center",
                   "bottom" if dy > 0.3 else "top" if dy < -0.3 else "center")


def _place_one(ax, renderer, point, name: str, radius: float, placed: list, obstacles: list, frame):
    """The nearest candidate that overlaps nothing, else the least overlapping: (annotation, box, distance).

    The text is laid out once; each candidate's box is that size moved to the candidate's anchor
    (with a little margin, so labels do not touch)."""
    probe = ax.annotate(name, point, xytext=(0, 0), textcoords="offset points", fontsize=FONT)
    size = probe.get_window_extent(renderer)
    probe.remove()
    w, h = size.width * 1.04, size.height * 1.1
    scale = renderer.points_to_pixels(1.0)
    x, y = ax.transData.transform(point)
    best = None
    for dist, (ox, oy), ha, va in _candidates(radius):
        cx = x + ox * scale + {"left": size.width / 2, "center": 0, "right": -size.width / 2}[ha]
        cy = y + oy * scale + {"bottom": size.height / 2, "center": 0, "top": -size.height / 2}[va]
        box = _around(cx, cy, w / 2, h / 2)
        outside = max(w * h - _overlap(box, frame), 0.0)
        cost = _overlap(box, placed) + _overlap(box, obstacles) + 4 * outside
        cost = 0.0 if cost < 1e-6 else cost  # areas in px²: below this is rounding, not overlap
        if best is None or cost < best[0]:
            best = (cost, box, dist, (ox, oy), ha, va)
        if cost == 0:
            break
    _, box, dist, offset, ha, va = best
    ann = ax.annotate(name, point, xytext=offset, textcoords="offset points", fontsize=FONT, ha=ha, va=va)
    return ann, box, dist


def _leader(ax, point, box, radius: float) -> None:
    """A thin line from the marker's edge to the nearest point of the label's box."""
    x, y = point
    tx, ty = min(max(x, box[0]), box[2]), min(max(y, box[1]), box[3])
    length = math.hypot(tx - x, ty - y)
    if length <= radius:
        return
    sx, sy = x + (tx - x) * radius / length, y + (ty - y) * radius / length
    inv = ax.transData.inverted()
    (ax0, ay0), (ax1, ay1) = inv.transform((sx, sy)), inv.transform((tx, ty))
    ax.plot([ax0, ax1], [ay0, ay1], color="0.45", linewidth=0.6, zorder=1)


def _size_handles(sizes: list[float], biggest: float) -> list:
    from matplotlib.lines import Line2D

    lo, hi = min(sizes), max(sizes)
    refs = sorted({lo, math.sqrt(lo * hi), hi}) if hi > lo * 1.5 else [hi]
    return [Line2D([], [], linestyle="none", marker="o", markersize=math.sqrt(_area(b, biggest)),
                   markerfacecolor="0.85", markeredgecolor="0.3", label=human_bytes(b)) for b in refs]


def _legends(fig, rows: list[dict], biggest: float, targets: list[str], bars: str) -> None:
    from matplotlib.lines import Line2D

    used = []
    for r in rows:
        if _route(r) not in used:
            used.append(_route(r))
    kind = [Line2D([], [], linestyle="none", marker="o", markersize=8, color=c, alpha=0.6, label=name)
            for name, c in used]
    kind += [Line2D([], [], linestyle="none", marker=TARGET_MARKERS[i % len(TARGET_MARKERS)], markersize=7,
                    markerfacecolor="white", markeredgecolor="0.2", label=t) for i, t in enumerate(targets)]
    kind += [Line2D([], [], linestyle="none", marker="o", markersize=12, markerfacecolor="none",
                    markeredgecolor="crimson", markeredgewidth=1.8, label="recommended"),
             Line2D([], [], linestyle="--", color="black", linewidth=1, label="Pareto front")]
    if bars:
        kind.append(Line2D([], [], color="0.35", linewidth=0.9, marker="|", label=bars))
    first = fig.legend(handles=kind, loc="lower left", bbox_to_anchor=(0.02, 0.005), ncol=2, fontsize=FONT,
                       title="colour: route · shape: target" if targets else "colour: route", title_fontsize=FONT,
                       frameon=False)
    fig.add_artist(first)
    fig.legend(handles=_size_handles([r["bytes"] for r in rows if number(r.get("bytes"))], biggest),
               loc="lower right", bbox_to_anchor=(0.98, 0.005), ncol=3, fontsize=FONT, frameon=False,
               title="marker area: bytes on disk", title_fontsize=FONT, labelspacing=1.4, borderpad=0.8,
               handletextpad=1.2, columnspacing=1.6)


def pareto_figure(matrix: dict):
    """The figure and its point labels (``(fig, labels)``); :func:`pareto_png` saves it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p, q = matrix["primary"], quality(matrix)
    rows = plotted_rows(matrix)
    fig = plt.figure(figsize=(8, 6.4), dpi=110)
    ax = fig.add_axes((0.09, 0.27, 0.88, 0.66))
    batch, threads = p.split("_")
    ax.set_xlabel(f"latency per batch of {batch[1:]}, {threads[1:]} thread(s), on the runtime it ships on (ms)")
    ax.set_ylabel(q["axis"])
    ax.set_title(f"{matrix['recipe']}: {q['short']} vs latency (up and left is better)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if not rows:
        ax.text(0.5, 0.5, "nothing measured", transform=ax.transAxes, ha="center")
        return fig, []
    xs = [r["latency"][p] for r in rows]
    ys = [r["accuracy"] for r in rows]
    sizes = [number(r.get("bytes")) or 0 for r in rows]
    biggest = max(sizes) or 1
    targets = sorted({r["target"] for r in rows if r.get("target")})
    chosen = picks(matrix)
    bars = set()
    for r, x, y, b in zip(rows, xs, ys, sizes, strict=True):
        marker = TARGET_MARKERS[targets.index(r["target"]) % len(TARGET_MARKERS)] if r.get("target") else "o"
        ax.scatter([x], [y], s=_area(b, biggest), alpha=0.55, color=_route(r)[1], marker=marker,
                   edgecolors="black", linewidths=0.6, zorder=3)
        band, se = latency_band(r, p), accuracy_se(r, matrix)
        bars |= ({"p10–p90 latency"} if band else set()) | ({"±1 s.e. " + q["short"]} if se else set())
        if band or se:
            xerr = [[max(x - band[0], 0)], [max(band[1] - x, 0)]] if band else None
            ax.errorbar([x], [y], xerr=xerr, yerr=se, fmt="none", ecolor="0.35", elinewidth=0.9, capsize=2,
                        zorder=2)
        if row_id(r) in chosen or r["strategy"] in chosen:
            ax.scatter([x], [y], s=_area(b, biggest) * 1.9 + 60, facecolors="none", edgecolors="crimson",
                       linewidths=1.8, marker=marker, zorder=4)
    on_front = [(xs[i], ys[i]) for i in front(list(zip(xs, ys, strict=True)))]
    ax.plot(*zip(*on_front, strict=True), "--", color="black", linewidth=1, zorder=2)
    _latency_axis(ax, xs)
    errs = [accuracy_se(r, matrix) or 0 for r in rows]
    lo, hi = min(y - e for y, e in zip(ys, errs, strict=True)), max(y + e for y, e in zip(ys, errs, strict=True))
    pad = (hi - lo) * 0.08 or 1.0
    ax.set_ylim(lo - pad, hi + pad)
    _legends(fig, rows, biggest, targets, ", ".join(sorted(bars)))
    renderer = fig.canvas.get_renderer()
    names = [r["strategy"] + (f" · {r['target']}" if r.get("target") else "") for r in rows]
    radii = [math.sqrt(_area(b, biggest) * (1.9 if row_id(r) in chosen or r["strategy"] in chosen else 1)
                       + (60 if row_id(r) in chosen or r["strategy"] in chosen else 0)) / 2
             for r, b in zip(rows, sizes, strict=True)]
    labels = place_labels(ax, renderer, list(zip(xs, ys, strict=True)), names, radii, avoid=on_front)
    return fig, labels


def pareto_png(matrix: dict) -> bytes:
    """``pareto.png``'s bytes (see the module docstring for what it shows)."""
    import matplotlib.pyplot as plt

    fig, _ = pareto_figure(matrix)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


__all__ = ["front", "pareto_figure", "pareto_png", "place_labels", "plotted_rows"]
