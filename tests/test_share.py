"""Shareable outputs: `ckptbench grid` (labelled X/Y/Z images whose size, pictures and captions are checked
pixel by pixel), `ckptbench export images` (readable names, infotext kept) and the recursive
`import infotext` that reads a store's own images/ab/<key>.png layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageFont
from typer.testing import CliRunner

from ckptbench.cli import app
from ckptbench.hashing import content_key
from ckptbench.infotext import format_infotext
from ckptbench.share.grid import METADATA_KEY
from ckptbench.share.grid_image import EMPTY, TEXT
from ckptbench.store import RunItem, Store
from ckptbench.suites.infotext_suite import cases_from_images, decode_user_comment, read_image_infotext
from tests.report_store import CHECKPOINTS, FAILED_CELL, PROMPTS, SEEDS, build_report_store, score_of

RUNNER = CliRunner()
SIZE = 256  # the grid's default picture size
FONT = 16  # and font size


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 checkpoints × 2 prompts × 3 seeds of 96×64 PNGs with infotext; one image failed (report_store)."""
    root = tmp_path_factory.mktemp("share") / "store"
    build_report_store(root).close()
    return root


def _invoke(*args: str) -> str:
    result = RUNNER.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # the console wraps long lines


def _metadata(path: Path) -> dict:
    with Image.open(path) as image:
        return json.loads(image.info[METADATA_KEY])


def _store_png(store_root: Path, key: str) -> Image.Image:
    return Image.open(store_root / "images" / key[:2] / f"{key}.png").convert("RGB")


def _key(checkpoint: str, prompt: int, seed: int) -> str:
    return content_key({"checkpoint": checkpoint, "prompt": PROMPTS[prompt], "seed": seed})


# --- ckptbench grid ------------------------------------------------------------------------------------

def test_grid_size_pictures_and_labels_follow_the_layout(store_root: Path, tmp_path: Path) -> None:
    _invoke("grid", "--store", str(store_root), "--out", str(tmp_path))
    files = sorted(tmp_path.glob("*.png"))
    assert [f.name for f in files] == ["quality-000.png", "quality-001.png"]  # one grid per prompt
    meta = _metadata(files[0])
    assert (meta["x"]["factor"], meta["y"]["factor"]) == ("seed", "checkpoint")
    assert meta["x"]["labels"] == [f"seed {s}" for s in SEEDS] and meta["y"]["labels"] == list(CHECKPOINTS)
    assert meta["prompt"] == meta["title"] == PROMPTS[0] and meta["scorers"] == ["aesthetic", "artifacts"]

    # The layout, recomputed here from its documented rules (share/grid_image.py).
    font = ImageFont.load_default(size=FONT)
    ascent, descent = font.getmetrics()
    line, margin, gap = ascent + descent + 2, 12, 6
    cell_w, cell_h = SIZE, round(64 * SIZE / 96)  # the 96×64 pictures, longest side 256
    row_header = max(round(font.getlength(name)) for name in CHECKPOINTS) + 4
    title_h = 2 * line + gap  # the prompt fits one line; then the subtitle
    caption_h = 2 * line  # two scorers
    left = margin + row_header + gap
    top = margin + title_h + line + gap  # one line of column labels
    width = left + 3 * (cell_w + gap) - gap + margin
    height = top + 3 * (cell_h + caption_h + gap) - gap + margin
    with Image.open(files[0]) as opened:
        grid = opened.convert("RGB")
    assert grid.size == (width, height) == (meta["layout"]["width"], meta["layout"]["height"])
    assert (meta["layout"]["left"], meta["layout"]["top"], meta["layout"]["cell"]) == (left, top, [cell_w, cell_h])

    # Every picture is the store's PNG, scaled, where the layout puts it.
    for row, checkpoint in enumerate(CHECKPOINTS):
        for column, seed in enumerate(SEEDS):
            x, y = left + column * (cell_w + gap), top + row * (cell_h + caption_h + gap)
            picture = np.asarray(grid.crop((x, y, x + cell_w, y + cell_h)))
            expected = _store_png(store_root, _key(checkpoint, 0, seed)).resize((cell_w, cell_h),
                                                                                Image.Resampling.LANCZOS)
            np.testing.assert_array_equal(picture, np.asarray(expected))
            assert meta["cells"][row][column]["image_key"] == _key(checkpoint, 0, seed)

    # Column labels: "seed 2" drawn the same way on a blank canvas gives the same pixels.
    header_top = margin + title_h
    x2 = left + 1 * (cell_w + gap)
    reference = Image.new("RGB", (cell_w, line), (255, 255, 255))
    ImageDraw.Draw(reference).text(((cell_w - round(font.getlength("seed 2"))) // 2, 0), "seed 2", font=font,
                                   fill=TEXT)
    np.testing.assert_array_equal(np.asarray(grid.crop((x2, header_top, x2 + cell_w, header_top + line))),
                                  np.asarray(reference))
    # Captions: the first cell's two score lines, drawn the same way.
    x0, y0 = left, top + cell_h
    captions = Image.new("RGB", (cell_w, caption_h), (255, 255, 255))
    for index, scorer in enumerate(("aesthetic", "artifacts")):
        text = f"{scorer} {score_of('alpha', 0, 1, scorer):.4g}"
        ImageDraw.Draw(captions).text((0, index * line), text, font=font, fill=TEXT)
    np.testing.assert_array_equal(np.asarray(grid.crop((x0, y0, x0 + cell_w, y0 + caption_h))),
                                  np.asarray(captions))
    # Row labels and the title strip carry text (dark pixels), the space between columns none.
    label_strip = np.asarray(grid.crop((margin, top, margin + row_header, top + cell_h)))
    assert (label_strip < 128).any()
    title_strip = np.asarray(grid.crop((margin, margin, width - margin, margin + line)))
    assert (title_strip < 128).any()
    between = np.asarray(grid.crop((left + cell_w, top, left + cell_w + gap, top + cell_h)))
    assert (between == 255).all()


def test_a_failed_image_is_a_grey_cell_with_its_reason(store_root: Path, tmp_path: Path) -> None:
    checkpoint, prompt, seed = FAILED_CELL
    _invoke("grid", "--store", str(store_root), "--out", str(tmp_path), "--only", f"prompt=quality/{prompt:03d}",
            "--size", "64")
    (path,) = tmp_path.glob("*.png")
    meta = _metadata(path)
    row, column = CHECKPOINTS.index(checkpoint), SEEDS.index(seed)
    assert meta["cells"][row][column]["failure"] == "CUDA out of memory"
    layout = meta["layout"]
    (width, height), gap = layout["cell"], layout["gap"]
    x = layout["left"] + column * (width + gap)
    y = layout["top"] + row * (height + layout["caption_height"] + gap)
    with Image.open(path) as opened:
        box = np.asarray(opened.convert("RGB").crop((x, y, x + width, y + height)))
    grey = (box == EMPTY).all(axis=2)
    assert grey.mean() > 0.8 and (box < 128).any()  # a grey box with dark text in it


def test_grid_over_prompts_and_formats_keep_their_labels(store_root: Path, tmp_path: Path) -> None:
    _invoke("grid", "--store", str(store_root), "--out", str(tmp_path), "--x", "prompt", "--only", "seed=1",
            "--scorer", "aesthetic", "--format", "jpg")
    (path,) = tmp_path.glob("*.jpg")
    assert path.name == "seed-1.jpg"
    with Image.open(path) as image:
        exif = image.getexif()
        meta = json.loads(decode_user_comment(exif.get_ifd(0x8769)[0x9286]))
        assert exif[0x010E].startswith("prompts of quality")
    assert meta["x"]["labels"] == list(PROMPTS) and meta["scorers"] == ["aesthetic"]
    assert meta["fixed"] == {"seed": "1"}


@pytest.mark.parametrize(("args", "message"), [
    (("--x", "sede"), "--x sede: not a factor of this run — did you mean 'seed'?"),
    (("--x", "checkpoint"), "--x and --y are both 'checkpoint'"),
    (("--only", "seed=9"), "--only seed=9: not in this run; its values are 1, 2, 3"),
    (("--scorer", "aesthetik"), "did you mean 'aesthetic'"),
    (("--format", "gif"), "--format gif: give png, jpg or webp"),
])
def test_grid_refuses_bad_choices_in_one_sentence(store_root: Path, tmp_path: Path, args: tuple[str, ...],
                                                  message: str) -> None:
    result = RUNNER.invoke(app, ["grid", "--store", str(store_root), "--out", str(tmp_path), *args])
    assert result.exit_code == 2 and message in " ".join(result.output.split())


def test_a_sweep_axis_is_the_default_x_of_a_grid(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    spec = {"generation": {"sweep": [{"name": "cfg", "values": [5.0, 7.0]}]}, "scorers": {"use": ["s"]}}
    run_id = store.start_run(spec, {})
    items = []
    for checkpoint in ("a", "b"):
        store.put_run_checkpoint(run_id, checkpoint, checkpoint, None, "ok", None)
        for cfg in (5, 7):
            key = content_key({"c": checkpoint, "cfg": cfg})
            pixels = np.full((32, 32, 3), 30 * cfg, dtype=np.uint8)
            store.put_image(key, Image.fromarray(pixels), format_infotext("a cube", "", {"CFG scale": cfg}),
                            checkpoint_sha256="0", prompt="a cube", negative_prompt="", seed=1, settings={},
                            backend="t", seconds=None)
            items.append(RunItem(checkpoint, "q", "000", "a cube", 1, key, f"cfg={cfg}"))
    store.put_run_items(run_id, items)
    store.finish_run(run_id, "ok")
    store.close()
    _invoke("grid", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "grids"), "--size", "32")
    (path,) = (tmp_path / "grids").glob("*.png")
    meta = _metadata(path)
    assert meta["x"] == {"factor": "cfg", "values": ["5", "7"], "labels": ["CFG scale: 5", "CFG scale: 7"]}
    assert [[cell["variant"] for cell in row] for row in meta["cells"]] == [["cfg=5", "cfg=7"]] * 2


# --- ckptbench export images ---------------------------------------------------------------------------

def test_export_by_checkpoint_keeps_the_png_bytes_and_names_what_it_shows(store_root: Path, tmp_path: Path) -> None:
    output = _invoke("export", "images", "--store", str(store_root), "--out", str(tmp_path))
    assert "wrote 17 image(s)" in output and "1 planned image(s) do not exist" in output
    first = tmp_path / "alpha" / "quality" / "000-a-lighthouse-at-dusk-oil-painting_seed1.png"
    key = _key("alpha", 0, 1)
    assert first.read_bytes() == (store_root / "images" / key[:2] / f"{key}.png").read_bytes()
    infotext = read_image_infotext(first)
    assert infotext is not None and infotext.startswith(PROMPTS[0]) and "Seed: 1" in infotext
    second = tmp_path / "beta" / "quality" / "001-portrait-of-an-old-fisherman-script-b-bold-b_seed3.png"
    assert second.is_file()
    index = pd.read_csv(tmp_path / "index.csv")
    assert len(index) == 17 and list(index.columns[-2:]) == ["aesthetic", "artifacts"]
    row = index[index.file == "alpha/quality/000-a-lighthouse-at-dusk-oil-painting_seed1.png"].iloc[0]
    assert (row.checkpoint, row.seed, row.image_key) == ("alpha", 1, key)
    assert row.aesthetic == pytest.approx(score_of("alpha", 0, 1, "aesthetic"))


def test_export_by_case_as_jpeg_keeps_the_infotext_in_exif(store_root: Path, tmp_path: Path) -> None:
    _invoke("export", "images", "--store", str(store_root), "--out", str(tmp_path), "--by", "case",
            "--format", "jpg", "--only", "checkpoint=gamma")
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.jpg"))
    assert files[:3] == [f"quality/000-a-lighthouse-at-dusk-oil-painting/gamma_seed{s}.jpg" for s in SEEDS]
    assert len(files) == 5  # gamma's 6 images but the failed one
    key = _key("gamma", 0, 2)
    with Image.open(store_root / "images" / key[:2] / f"{key}.png") as original:
        expected = original.info["parameters"]
    assert read_image_infotext(tmp_path / files[1]) == expected


# --- import infotext reads a store ---------------------------------------------------------------------

def test_import_infotext_reads_a_stores_nested_images(store_root: Path, tmp_path: Path) -> None:
    cases, skipped = cases_from_images(store_root / "images", "imported")
    assert len(cases) == 17 and skipped == []  # every image of the store is in images/ab/<key>.png
    assert sorted({case.prompt for case in cases}) == sorted(PROMPTS)
    assert all(case.references[0].parent.parent.name == "images" for case in cases)
    output = _invoke("import", "infotext", str(store_root), "--out", str(tmp_path / "suite.toml"))
    assert "17 case(s)" in output


def test_a_caption_too_long_for_its_cell_shortens_the_scorer_name_not_the_value() -> None:
    from ckptbench.share.grid_image import fit_caption, grid_font, text_width

    font = grid_font(13)
    text = fit_caption("laion-aesthetic-v2", "-0.2042", 128, font)
    assert text.endswith("… -0.2042") and text.startswith("laion-aes") and text_width(text, font) <= 128
    assert fit_caption("clip-score", "1.662", 128, font) == "clip-score 1.662"
