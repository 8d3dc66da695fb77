"""The report's contact sheet: every prompt at once, one row per prompt and one column per checkpoint (and
sweep variant), each cell one seed's thumbnail; a picker switches every row to another seed.

The sheet is built from the seed grids and carries only the first seed's pictures: the page's script takes
another seed's from the grids already in the page, so the sheet adds little to a large report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ckptbench.report.grids import GridCell, SeedGrid


@dataclass(frozen=True)
class ContactRow:
    grid: SeedGrid
    cells: list[tuple[int, GridCell] | None]  # per column: (the row's index in its grid, the first seed's cell)


@dataclass(frozen=True)
class ContactSheet:
    columns: list[str]  # checkpoints (with the variant, in a sweep), in the leaderboard's order
    seeds: list[int]  # every seed of any prompt
    rows: list[ContactRow]


def contact_sheet(grids: Sequence[SeedGrid]) -> ContactSheet | None:
    """The sheet over the grids that have pictures; None when none has (an import without images)."""
    pictured = [grid for grid in grids if grid.has_images]
    if not pictured:
        return None
    # A checkpoint that made nothing (it failed to load) gets no column: its seed grid rows say so.
    columns = list(dict.fromkeys(label for grid in pictured for label, row in grid.rows
                                 if any(cell.image_key for cell in row)))
    rows = []
    for grid in pictured:
        index = {label: position for position, (label, _) in enumerate(grid.rows)}
        rows.append(ContactRow(grid, [(index[c], grid.rows[index[c]][1][0]) if c in index and grid.seeds else None
                                      for c in columns]))
    seeds = sorted({seed for grid in pictured for seed in grid.seeds})
    return ContactSheet(columns, seeds, rows)
