"""Reading tables out of the report's HTML with the standard library's parser (tests only)."""

from __future__ import annotations

from html.parser import HTMLParser


class _Tables(HTMLParser):
    def __init__(self, table_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.table_id = table_id
        self.depth = 0  # nesting depth of tables inside the wanted table (0: not inside it)
        self.section: str | None = None
        self.header: list[str] = []
        self.rows: list[list[str]] = []
        self.row_attributes: list[dict[str, str | None]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table":
            if self.depth or attributes.get("id") == self.table_id:
                self.depth += 1
        elif self.depth == 1 and tag in ("thead", "tbody"):
            self.section = tag
        elif self.depth == 1 and tag == "tr" and self.section == "tbody":
            self.rows.append([])
            self.row_attributes.append(attributes)
        elif self.depth == 1 and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self.depth:
            self.depth -= 1
        elif self.depth == 1 and tag in ("td", "th") and self._cell is not None:
            text = " ".join("".join(self._cell).split())
            if self.section == "thead":
                self.header.append(text)
            elif self.rows:
                self.rows[-1].append(text)
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def read_table(html: str, table_id: str) -> tuple[list[str], list[list[str]]]:
    """(header texts, body rows of cell texts) of the table with that id; ([], []) when absent."""
    parser = _Tables(table_id)
    parser.feed(html)
    return parser.header, parser.rows
