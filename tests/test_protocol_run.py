"""End to end on tiny models: a quality suite, the builtin style suite with reference folders and a LoRA suite
with NoTM, generated, scored and analysed into style and LoRA matrices."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from ckptbench.demo.tiny import tiny_sd15_pipeline
from ckptbench.demo.tiny_lora import kohya_lora, save_lora
from ckptbench.runner import run_benchmark
from ckptbench.spec_load import load_spec

STYLES = ("Anime", "Manga", "Photographic", "Isometric", "Low_Poly", "Line_Art", "3D_Model", "Pixel_Art", "Watercolor")


def _picture(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, size=(40, 48, 3), dtype=np.uint8)).save(path)


@pytest.mark.slow
def test_quality_style_and_lora_suites_end_to_end(tmp_path: Path, tiny_models: dict[str, Path],
                                                  tiny_scorer_models: dict[str, Path]) -> None:
    for index, style in enumerate(STYLES):
        _picture(tmp_path / "style-refs" / style / "ref.png", index)
    _picture(tmp_path / "showcase" / "ink.png", 20)
    _picture(tmp_path / "showcase" / "tarot.png", 21)
    model = tiny_sd15_pipeline(seed=1)  # the architecture of both tiny checkpoints
    save_lora(kohya_lora(model.unet, model.text_encoder, seed=5), tmp_path / "loras" / "inkstyle.safetensors")
    tarot = save_lora(kohya_lora(model.unet, model.text_encoder, seed=6), tmp_path / "loras" / "tarotV5.safetensors")
    autov2 = hashlib.sha256(tarot.read_bytes()).hexdigest()[:10]
    (tmp_path / "loras.toml").write_text(f'''
[suite]
kind = "lora"

[[cases]]
id = "ink"
prompt = "a heron by a lake, <lora:inkstyle:0.8>"
references = ["showcase/ink.png"]
showcase_models = ["a.safetensors"]

[[cases]]
id = "tarot"
prompt = "a fortune teller's card"
loras = ["tarot"]
references = ["showcase/tarot.png"]
showcase_models = ["anything-v4.5-pruned"]
lora_files = {{ tarot = "autov2:{autov2}" }}
''')
    m = {key: str(value) for key, value in tiny_scorer_models.items()}
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(f'''
[benchmark]
name = "protocol"
store = "store"
bootstrap = 200

[[checkpoints]]
name = "a"
path = "{tiny_models['single_a']}"
config = "{tiny_models['config']}"

[[checkpoints]]
name = "b"
path = "{tiny_models['folder_b']}"

[generation]
sampler = "Euler"
steps = 3
width = 64
height = 64
seeds = [1, 2]
lora_dirs = ["loras"]

[[suites]]
name = "quality"
prompts = ["a red cube", "a lighthouse at dusk"]

[[suites]]
builtin = "styles"
references = "style-refs"
limit = 2

[[suites]]
file = "loras.toml"

[scorers]
use = ["laion-aesthetic-v2", "style-gram", "style-clip"]
[scorers.laion-aesthetic-v2]
model = "{m['clip']}"
head = "{m['head']}"
[scorers.style-gram]
model = "{m['vgg']}"
[scorers.style-clip]
model = "{m['clip']}"

[analysis]
baseline = "a"
composite = {{ laion-aesthetic-v2 = 1.0, style-gram = 0.5 }}
''')
    outcome = run_benchmark(load_spec(spec_path), console=Console(quiet=True))
    results = json.loads(Path(outcome.results_path).read_text())
    assert results["failures"] == []
    suites = results["analysis"]["suites"]
    assert {name: suite["kind"] for name, suite in suites.items()} == {"quality": "quality", "styles": "style",
                                                                       "loras": "lora"}
    # Style matrix: checkpoint × style, loss of each checkpoint's images against that style's references.
    style_matrix = suites["styles"]["matrices"]["style-gram"]
    assert style_matrix["rows"] == ["a", "b"] and style_matrix["columns"] == ["anime", "manga"]
    assert all(v is not None and v > 0 for row in style_matrix["mean"] for v in row)
    assert style_matrix["n"] == [[2, 2], [2, 2]] and not style_matrix["higher_is_better"]
    assert suites["styles"]["case_labels"] == {"anime": "Anime", "manga": "Manga"}
    # LoRA matrix, and NoTM: the ink LoRA's showcase was made with checkpoint a, so a sits it out.
    lora = suites["loras"]
    assert lora["matrices"]["style-clip"]["columns"] == ["ink", "tarot"]
    assert lora["case_labels"] == {"ink": "ink", "tarot": "tarot"}
    notm = lora["notm"]
    assert notm["excluded"] == {"a": ["ink"], "b": []}
    assert notm["matrices"]["style-gram"]["excluded"] == [[True, False], [False, False]]
    assert notm["scorers"]["style-gram"]["summary"]["a"]["n"] == 2
    assert notm["scorers"]["style-gram"]["summary"]["b"]["n"] == 4
    # Style scorers only answer cases with references; the aesthetic answers every image.
    assert "style-gram" not in suites["quality"]["scorers"]
    assert set(lora["scorers"]) == {"laion-aesthetic-v2", "style-gram", "style-clip"}
    quality = suites["quality"]["scorers"]["laion-aesthetic-v2"]
    assert quality["baseline"]["scores"]["a"]["mean_diff"] == 0.0 and len(quality["pairs"]) == 1
    assert lora["composite"]["weights"] == {"laion-aesthetic-v2": 1.0, "style-gram": 0.5}
    # The LoRA cases were generated with their LoRAs, resolved by name (inkstyle) and by AutoV2 hash (tarot).
    with sqlite3.connect(Path(outcome.store) / "ckptbench.sqlite") as db:
        rows = db.execute("SELECT ri.case_id, i.infotext FROM run_items ri JOIN images i ON i.key = ri.image_key "
                          "WHERE ri.suite = 'loras'").fetchall()
    assert len(rows) == 8
    assert all(f"{'inkstyle' if case == 'ink' else 'tarot'}: " in text for case, text in rows)
