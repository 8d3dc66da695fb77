"""Drawing one labelled grid image, as A1111's X/Y/Z plot: a title block (the prompt, then what the grid
holds fixed), column labels on top, row labels on the left, and under every picture one caption line per
scorer. Text uses Pillow's bundled font (``ImageFont.load_default``), so it renders the same on any machine.

Layout, in pixels (``GridLayout``; every number is public so tests and readers can check the image)::

    left   = margin + row_header_width + gap                      x of the first column
    top    = margin + title_height + header_height + gap          y of the first row
    column c starts at left + c · (cell_width + gap)
    row r    starts at top  + r · (cell_height + caption_height + gap)
    width  = left + columns · (cell_width + gap) − gap + margin
    height = top  + rows · (cell_height + caption_height + gap) − gap + margin

A picture is scaled so its longest side is ``size`` (all pictures of a grid share the first one's
aspect) and centred in its box; a cell without a picture is a grey box with the reason it has none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
TEXT = (29, 33, 37)
MUTED = (106, 115, 125)
EMPTY = (230, 232, 235)
ELLIPSIS = "…"


@dataclass(frozen=True)
class GridStyle:
    size: int = 256  # longest side of a cell's picture, in pixels
    font_size: int = 16
    margin: int = 12
    gap: int = 6
    title_lines: int = 4  # the prompt is cut after this many lines
    label_lines: int = 3  # a column or row label is cut after this many lines


@dataclass(frozen=True)
class GridCellContent:
    image: Path | None  # None: no picture (failed or not made)
    captions: tuple[tuple[str, str], ...] = ()  # one line per scorer: (its name, the value as text)
    failure: str | None = None  # shown in the empty box


@dataclass(frozen=True)
class GridContent:
    title: str  # the prompt
    subtitle: str  # what the grid holds fixed ("quality · 000 · seed 1")
    column_labels: tuple[str, ...]
    row_labels: tuple[str, ...]
    cells: tuple[tuple[GridCellContent | None, ...], ...]  # [row][column]; None: not planned
    caption_lines: int = 0  # lines reserved under each picture (the number of scorers shown)


@dataclass(frozen=True)
class GridLayout:
    columns: int
    rows: int
    cell_width: int
    cell_height: int
    caption_height: int
    row_header_width: int
    header_height: int
    title_height: int
    line_height: int
    margin: int
    gap: int
    title: tuple[str, ...]  # the title block's lines (the wrapped prompt, then the subtitle)
    column_labels: tuple[tuple[str, ...], ...]  # each column label's lines
    row_labels: tuple[tuple[str, ...], ...]

    @property
    def left(self) -> int:
        return self.margin + self.row_header_width + self.gap

    @property
    def top(self) -> int:
        return self.margin + self.title_height + self.header_height + self.gap

    @property
    def width(self) -> int:
        return self.left + self.columns * (self.cell_width + self.gap) - self.gap + self.margin

    @property
    def height(self) -> int:
        return self.top + self.rows * (self.cell_height + self.caption_height + self.gap) - self.gap + self.margin

    def cell_origin(self, row: int, column: int) -> tuple[int, int]:
        return (self.left + column * (self.cell_width + self.gap),
                self.top + row * (self.cell_height + self.caption_height + self.gap))


@lru_cache(maxsize=8)
def grid_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` (FreeType builds of Pillow ≥ 10.1; else its fixed bitmap font)."""
    return ImageFont.load_default(size=size)


def line_height(font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    if isinstance(font, ImageFont.FreeTypeFont):
        ascent, descent = font.getmetrics()
        return ascent + descent + 2
    return 13


def text_width(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    return round(font.getlength(text))


def wrap(text: str, width: int, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, max_lines: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels; a word too long for a line is cut; after ``max_lines`` lines the
    last one ends in an ellipsis."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if text_width(candidate, font) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        while text_width(current, font) > width and len(current) > 1:  # a word wider than the line
            cut = _fitting(current, width, font)
            lines.append(current[:cut])
            current = current[cut:]
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = fit(lines[-1] + ELLIPSIS, width, font)
    return lines or [""]


def fit(text: str, width: int, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> str:
    """``text`` cut to ``width`` pixels, ending in an ellipsis when cut."""
    if text_width(text, font) <= width:
        return text
    while text and text_width(text + ELLIPSIS, font) > width:
        text = text[:-1]
    return text.rstrip() + ELLIPSIS


def _fitting(word: str, width: int, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    cut = len(word)
    while cut > 1 and text_width(word[:cut], font) > width:
        cut -= 1
    return cut


def picture_box(content: GridContent, size: int) -> tuple[int, int]:
    """The size every picture of the grid is drawn at: the first picture's aspect, longest side ``size``."""
    first = next((cell.image for row in content.cells for cell in row if cell and cell.image), None)
    if first is None:
        return size, size
    with Image.open(first) as image:
        width, height = image.size
    scale = size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def plan_layout(content: GridContent, style: GridStyle) -> GridLayout:
    font = grid_font(style.font_size)
    line = line_height(font)
    cell_width, cell_height = picture_box(content, style.size)
    natural = max((text_width(label, font) for label in content.row_labels), default=0) + 4
    row_header_width = min(natural, max(cell_width, 200))
    row_labels = tuple(tuple(wrap(label, row_header_width, font, style.label_lines)) for label in content.row_labels)
    column_labels = tuple(tuple(wrap(label, cell_width, font, style.label_lines)) for label in content.column_labels)
    columns = len(content.column_labels)
    inner = row_header_width + style.gap + columns * (cell_width + style.gap) - style.gap
    title = (*wrap(content.title, inner, font, style.title_lines), fit(content.subtitle, inner, font))
    return GridLayout(
        columns=columns, rows=len(content.row_labels), cell_width=cell_width, cell_height=cell_height,
        caption_height=content.caption_lines * line, row_header_width=row_header_width,
        header_height=max((len(lines) for lines in column_labels), default=1) * line,
        title_height=len(title) * line + style.gap, line_height=line, margin=style.margin, gap=style.gap,
        title=title, column_labels=column_labels, row_labels=row_labels)


def render_grid(content: GridContent, style: GridStyle = GridStyle()) -> tuple[Image.Image, GridLayout]:
    """The grid image and the layout it was drawn with."""
    layout = plan_layout(content, style)
    font = grid_font(style.font_size)
    canvas = Image.new("RGB", (layout.width, layout.height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    line = layout.line_height
    for index, text in enumerate(layout.title):
        draw.text((layout.margin, layout.margin + index * line), text, font=font,
                  fill=MUTED if index == len(layout.title) - 1 else TEXT)
    header_top = layout.margin + layout.title_height
    for column, lines in enumerate(layout.column_labels):
        left, _ = layout.cell_origin(0, column)
        for index, text in enumerate(lines):
            offset = (layout.cell_width - text_width(text, font)) // 2
            draw.text((left + offset, header_top + index * line), text, font=font, fill=TEXT)
    for row, lines in enumerate(layout.row_labels):
        _, top = layout.cell_origin(row, 0)
        start = top + (layout.cell_height - len(lines) * line) // 2
        for index, text in enumerate(lines):
            draw.text((layout.margin, start + index * line), text, font=font, fill=TEXT)
    for row, cells in enumerate(content.cells):
        for column, cell in enumerate(cells):
            _draw_cell(canvas, draw, layout, font, row, column, cell)
    return canvas, layout


def _draw_cell(canvas: Image.Image, draw: ImageDraw.ImageDraw, layout: GridLayout,
               font: ImageFont.FreeTypeFont | ImageFont.ImageFont, row: int, column: int,
               cell: GridCellContent | None) -> None:
    left, top = layout.cell_origin(row, column)
    picture = _picture(cell.image, layout.cell_width, layout.cell_height) if cell and cell.image else None
    if picture is not None:
        canvas.paste(picture, (left + (layout.cell_width - picture.width) // 2,
                               top + (layout.cell_height - picture.height) // 2))
    else:
        draw.rectangle((left, top, left + layout.cell_width - 1, top + layout.cell_height - 1), fill=EMPTY)
        reason = "not planned" if cell is None else (cell.failure or "no image")
        lines = wrap(reason, layout.cell_width - 8, font, max(1, layout.cell_height // layout.line_height - 1))
        for index, text in enumerate(lines):
            draw.text((left + 4, top + 4 + index * layout.line_height), text, font=font, fill=MUTED)
    for index, (name, value) in enumerate(cell.captions if cell else ()):
        draw.text((left, top + layout.cell_height + index * layout.line_height),
                  fit_caption(name, value, layout.cell_width, font), font=font, fill=TEXT)


def _picture(path: Path, width: int, height: int) -> Image.Image | None:
    """The picture scaled to fit ``width`` × ``height`` (its aspect kept); None when it cannot be read."""
    try:
        with Image.open(path) as image:
            picture = image.convert("RGB")
    except OSError:
        return None
    scale = min(width / picture.width, height / picture.height)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture if size == picture.size else picture.resize(size, Image.Resampling.LANCZOS)


def caption_lines(scorers: Sequence[str], scores: dict[str, float | None]) -> tuple[tuple[str, str], ...]:
    """One caption per scorer: its name and value to four significant digits ("–" when missing)."""
    return tuple((name, _number(scores.get(name))) for name in scorers)


def fit_caption(name: str, value: str, width: int, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> str:
    """"name value" in ``width`` pixels: when it is too long the name is shortened, never the value."""
    text = f"{name} {value}"
    if text_width(text, font) <= width:
        return text
    room = width - text_width(f" {value}", font)
    return f"{fit(name, room, font)} {value}" if room > text_width("x" + ELLIPSIS, font) else fit(value, width, font)


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"
