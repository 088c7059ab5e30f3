"""Small SVG charts for asset metadata and reports (no plotting dependency).

Dagster renders markdown metadata, including images given as data URIs, so a chart is an
SVG string embedded with :func:`md_image`.
"""

import base64
import html


def _esc(v) -> str:
    return html.escape(str(v))


def bar_chart(labels: list[str], values: list[float], title: str, fmt: str = "{:,.0f}", width: int = 560) -> str:
    """A horizontal bar chart."""
    top = max(values) if values and max(values) > 0 else 1
    bar_h, gap, left = 22, 6, 170
    height = len(values) * (bar_h + gap) + 30
    parts = [f'<svg role="img" aria-label="{_esc(title)}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="0" y="14" font-size="13" font-family="sans-serif" font-weight="bold">{_esc(title)}</text>']
    for i, (lab, val) in enumerate(zip(labels, values, strict=True)):
        y = 24 + i * (bar_h + gap)
        w = max(1.0, (width - left - 90) * max(val, 0) / top)
        parts.append(f'<text x="{left - 6}" y="{y + 15}" font-size="12" font-family="sans-serif" text-anchor="end">{_esc(lab)}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="#4f6bed"/>')
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 15}" font-size="12" font-family="sans-serif">{_esc(fmt.format(val))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(series: dict[str, tuple[list[float], list[float]]], title: str, x_label: str, y_label: str,
               diagonal: bool = True, width: int = 420, height: int = 340) -> str:
    """Lines on [0, 1] x [0, 1] (reliability and gains charts), with an optional diagonal reference."""
    left, bottom, top_pad, right = 50, 40, 28, 20
    pw, ph = width - left - right, height - bottom - top_pad
    colours = ["#4f6bed", "#e4572e", "#17a398", "#7a7a7a"]

    def xy(x, y):
        return left + pw * min(max(x, 0), 1), top_pad + ph * (1 - min(max(y, 0), 1))

    parts = [f'<svg role="img" aria-label="{_esc(title)}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="{left}" y="16" font-size="13" font-family="sans-serif" font-weight="bold">{_esc(title)}</text>',
             f'<rect x="{left}" y="{top_pad}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        x, y = xy(t, 0)
        parts.append(f'<text x="{x:.1f}" y="{y + 14:.1f}" font-size="10" font-family="sans-serif" text-anchor="middle">{t:g}</text>')
        x, y = xy(0, t)
        parts.append(f'<text x="{x - 6:.1f}" y="{y + 3:.1f}" font-size="10" font-family="sans-serif" text-anchor="end">{t:g}</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{height - 6}" font-size="11" font-family="sans-serif" text-anchor="middle">{_esc(x_label)}</text>')
    parts.append(f'<text x="12" y="{top_pad + ph / 2}" font-size="11" font-family="sans-serif" text-anchor="middle" '
                 f'transform="rotate(-90 12 {top_pad + ph / 2})">{_esc(y_label)}</text>')
    if diagonal:
        (x0, y0), (x1, y1) = xy(0, 0), xy(1, 1)
        parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#bbb" stroke-dasharray="4 3"/>')
    for i, (name, (xs, ys)) in enumerate(series.items()):
        pts = " ".join(f"{px:.1f},{py:.1f}" for px, py in (xy(x, y) for x, y in zip(xs, ys, strict=True)))
        colour = colours[i % len(colours)]
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{left + 8}" y="{top_pad + 16 + 14 * i}" font-size="11" font-family="sans-serif" fill="{colour}">{_esc(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def md_image(svg: str, alt: str) -> str:
    """Markdown embedding an SVG as a data URI (what Dagster's metadata panel renders as an image)."""
    return f"![{alt}](data:image/svg+xml;base64,{base64.b64encode(svg.encode('utf-8')).decode('ascii')})"
