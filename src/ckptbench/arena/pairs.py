"""Which two images to show next.

The pool is a run's cells (suite, case, seed, sweep variant) with images from two or more checkpoints. The next pair is
chosen to be informative rather than uniformly at random:

1. the checkpoint pair whose order is least settled: the largest p·(1 − p) / (1 + n), where p is the
   current Bradley–Terry probability that one is preferred to the other (from every vote so far) and n the
   votes already cast on that pair — close pairs and rarely compared pairs come first, lopsided and
   well-measured ones rarely;
2. for that pair, a cell this rater has not judged (nor been shown in the last ``PENDING_SECONDS``), among
   those with the fewest votes from anyone, at random;
3. sides at random.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

from ckptbench.arena.bradley_terry import win_probability
from ckptbench.arena.comparisons import comparisons_from_votes

PENDING_SECONDS = 600.0  # a pair shown but not voted on (page reloaded, preloaded) is not shown again for this long


@dataclass(frozen=True)
class ArenaCell:
    suite: str
    case_id: str
    prompt: str
    seed: int
    images: Mapping[str, str]  # checkpoint → image key, only checkpoints whose image exists
    variant: str = ""  # the sweep variant: a pair never compares two different settings


@dataclass(frozen=True)
class Choice:
    cell: ArenaCell
    left: str  # checkpoint shown on the left
    right: str


def arena_cells(rows: Sequence[Mapping[str, object]], suite: str | None = None) -> list[ArenaCell]:
    """Cells of a run's items (``Store.run_item_rows``) that can make a pair: two checkpoints or more with
    an image each, and different images (two entries naming the same file make the same image key)."""
    grouped: dict[tuple[str, str, int, str], dict[str, str]] = defaultdict(dict)
    prompts: dict[tuple[str, str, int, str], str] = {}
    for row in rows:
        if row["image"] is None or (suite is not None and row["suite"] != suite):
            continue
        cell = (str(row["suite"]), str(row["case_id"]), int(row["seed"]),  # type: ignore[call-overload]
                str(row.get("variant") or ""))
        if str(row["image_key"]) not in grouped[cell].values():
            grouped[cell][str(row["checkpoint"])] = str(row["image_key"])
        prompts[cell] = str(row["prompt"])
    return [ArenaCell(suite_name, case_id, prompts[(suite_name, case_id, seed, variant)], seed, images, variant)
            for (suite_name, case_id, seed, variant), images in sorted(grouped.items()) if len(images) >= 2]


class PairChooser:
    def __init__(self, cells: Sequence[ArenaCell], rng: random.Random | None = None) -> None:
        self.cells = list(cells)
        self.rng = rng or random.Random()
        self.names = sorted({name for cell in self.cells for name in cell.images})
        self.owners = {key: name for cell in self.cells for name, key in cell.images.items()}
        self.cells_of: dict[tuple[str, str], list[int]] = defaultdict(list)
        for index, cell in enumerate(self.cells):
            for pair in combinations(sorted(cell.images), 2):
                self.cells_of[pair].append(index)

    def choose(self, rater: str, votes: Sequence[Mapping[str, object]],
               pending: Sequence[tuple[str, str]] = ()) -> Choice | None:
        """The next pair for ``rater``; ``pending``: image-key pairs recently shown to them without a vote.
        None when the rater has judged every pair of the pool."""
        comparisons, _ = comparisons_from_votes(votes, self.owners, self.names)
        theta = comparisons.fit().theta if len(comparisons) else [0.0] * len(self.names)
        strength = dict(zip(self.names, theta, strict=True))
        compared = Counter(tuple(sorted((self.owners[str(v["left_key"])], self.owners[str(v["right_key"])])))
                           for v in comparisons.votes)
        seen_by_anyone = Counter(frozenset((str(v["left_key"]), str(v["right_key"]))) for v in votes)
        excluded = {frozenset((str(v["left_key"]), str(v["right_key"]))) for v in votes if v["rater"] == rater}
        excluded |= {frozenset(pair) for pair in pending}

        ranked = sorted(self.cells_of, key=lambda pair: (-self._priority(pair, strength, compared), self.rng.random()))
        for pair in ranked:
            open_cells = [index for index in self.cells_of[pair]
                          if frozenset(self.cells[index].images[name] for name in pair) not in excluded]
            if not open_cells:
                continue
            fewest = min(seen_by_anyone[self._keys(index, pair)] for index in open_cells)
            index = self.rng.choice([i for i in open_cells if seen_by_anyone[self._keys(i, pair)] == fewest])
            left, right = pair if self.rng.random() < 0.5 else pair[::-1]
            return Choice(self.cells[index], left, right)
        return None

    def _keys(self, index: int, pair: tuple[str, str]) -> frozenset[str]:
        return frozenset(self.cells[index].images[name] for name in pair)

    @staticmethod
    def _priority(pair: tuple[str, str], strength: Mapping[str, float], compared: Counter[tuple[str, ...]]) -> float:
        p = win_probability(strength[pair[0]], strength[pair[1]])
        return p * (1 - p) / (1 + compared[pair])
