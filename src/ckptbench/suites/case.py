"""``Case``: one thing to generate, independent of checkpoint and seed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ckptbench.prompt import LoraTag
from ckptbench.spec import BenchmarkSpec


@dataclass(frozen=True)
class Case:
    suite: str
    case_id: str
    prompt: str  # as the user wrote it, A1111 syntax and <lora:…> tags included
    negative_prompt: str | None = None  # None: the benchmark's default negative prompt
    loras: tuple[LoraTag, ...] = ()  # LoRAs named by the suite besides the prompt's own <lora:…> tags
    style: str | None = None  # the style this case asks for (style suites)
    references: tuple[Path, ...] = ()  # reference images the result is compared with (style, LoRA)
    tags: tuple[str, ...] = ()

    def pixel_inputs(self, default_negative: str) -> dict[str, str]:
        """The case's text fields that change the generated pixels (part of the image's content key)."""
        negative = self.negative_prompt if self.negative_prompt is not None else default_negative
        return {"prompt": self.prompt, "negative_prompt": negative}


def cases_from_spec(spec: BenchmarkSpec) -> list[Case]:
    """Every case of every suite, in spec order; case ids are stable positions within their suite."""
    cases: list[Case] = []
    for suite in spec.suites:
        width = max(3, len(str(len(suite.prompts) - 1)))
        cases.extend(
            Case(suite=suite.name, case_id=f"{index:0{width}d}", prompt=prompt)
            for index, prompt in enumerate(suite.prompts)
        )
    return cases
