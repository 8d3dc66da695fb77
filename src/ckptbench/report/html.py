"""The HTML report: a self-contained page (no CDN, no server) next to the store's images."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jinja2

from ckptbench.atomic import atomic_write_text

_TEMPLATES = Path(__file__).parent / "templates"


def _number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if value != 0 and not 1e-3 <= abs(value) < 1e6:  # Gram losses (~1e9) and tiny values stay readable
        return f"{value:.{max(digits, 1)}e}"
    return f"{value:.{digits}f}"


def render_report(results: dict[str, Any], out: Path) -> Path:
    """Write ``out/index.html`` for a results document; return its path."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=True,
                                     undefined=jinja2.StrictUndefined)
    environment.filters["num"] = _number
    scorers = results["scorers"]
    image_scorers = {name: info for name, info in scorers.items() if info.get("level") != "set"}
    set_scorers = {name: info for name, info in scorers.items() if info.get("level") == "set"}
    checkpoints = sorted(results["checkpoints"], key=lambda c: (c["status"] != "ok", c["name"]))
    html = environment.get_template("index.html.j2").render(
        results=results, scorers=scorers, image_scorers=image_scorers, set_scorers=set_scorers,
        checkpoints=checkpoints,
    )
    path = out / "index.html"
    atomic_write_text(path, html)
    return path
