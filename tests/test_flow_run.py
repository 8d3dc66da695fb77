"""``ckptbench run`` on every tiny family model: images generated, scored, the report written, families named.

Slow (about 30 s): it loads four flow checkpoints and an SDXL v-pred + ZTSNR file through the real run.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ckptbench.cli import app
from ckptbench.demo.tiny import save_config_folder, tiny_sdxl_pipeline
from ckptbench.demo.tiny_families import save_sdxl_vpred_ztsnr
from tests.flow_models import flux_split_fields, sd35_split_fields


def _entry(name: str, fields: dict[str, object]) -> str:
    lines = ["[[checkpoints]]", f'name = "{name}"']
    for key, value in fields.items():
        if isinstance(value, tuple):
            lines.append(f"{key} = {json.dumps([str(v) for v in value])}")
        elif value is not None:
            lines.append(f'{key} = "{value}"')
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_run_on_every_family_writes_the_report(flow_models, tiny_models, write_spec, tmp_path: Path) -> None:
    sdxl = save_sdxl_vpred_ztsnr(tmp_path / "noob.safetensors")
    checkpoints = "".join([
        _entry("flux-dev", {"path": flow_models["flux_full"], "config": flow_models["flux_config"],
                            "t5_tokenizer": flow_models["tokenizer"]}),
        _entry("flux-fp8", flux_split_fields(flow_models, "flux_fp8")),
        _entry("flux-schnell", {"path": flow_models["schnell_full"], "config": flow_models["schnell_config"],
                                "t5_tokenizer": flow_models["tokenizer"]}),
        _entry("sd35", sd35_split_fields(flow_models)),
        _entry("noob", {"path": sdxl, "config": save_config_folder(tiny_sdxl_pipeline(6), tmp_path / "xl-config")}),
    ])
    spec = write_spec(checkpoints=checkpoints,
                      generation='sampler = "DPM++ 2M Karras"\nsteps = 3\ncfg = 5.0\nwidth = 64\nheight = 64\n'
                                 'seeds = [1, 2]\nbatch_size = 2')
    result = CliRunner().invoke(app, ["run", str(spec)])
    assert result.exit_code == 0, result.output
    store = spec.parent / "store"
    results = json.loads((store / "results.json").read_text())
    families = {c["name"]: (c["model"]["family"], c["model"].get("variant"), c["images"]["ok"])
                for c in results["checkpoints"]}
    assert families == {"flux-dev": ("flux", "dev", 4), "flux-fp8": ("flux", "dev", 4),
                        "flux-schnell": ("flux", "schnell", 4), "sd35": ("sd35", "medium", 4),
                        "noob": ("sdxl", None, 4)}
    assert all(c["scores"]["clip-score"]["n"] == 4 for c in results["checkpoints"])
    report = (store / "report" / "index.html").read_text()
    assert "flux dev, flow" in report and "sdxl, v, zero terminal SNR" in report
    with sqlite3.connect(store / "ckptbench.sqlite") as db:
        infotexts = dict(db.execute("select r.checkpoint, i.infotext from run_items r join images i "
                                    "on i.key = r.image_key").fetchall())
    assert "Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5" in infotexts["flux-dev"]
    assert "CFG scale: 1, Seed" in infotexts["flux-schnell"]  # no guidance embedding: no distilled CFG
    assert "Schedule type: Simple, CFG scale: 5" in infotexts["sd35"]
    assert "Noise Schedule: Zero Terminal SNR" in infotexts["noob"]
    assert "CFG 5 → 1 with distilled CFG 3.5" in result.output
