"""Suite sources: ckptbench's TOML format, the builtin suites, GhostReview's CSVs, PartiPrompts and images with
A1111 infotext."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from typer.testing import CliRunner

from ckptbench.cli import app
from ckptbench.errors import SuiteError
from ckptbench.prompt import LoraTag
from ckptbench.suites import ghostreview
from ckptbench.suites.case import Case
from ckptbench.suites.infotext_suite import cases_from_images, lora_hashes
from ckptbench.suites.load import builtin_suite_path
from ckptbench.suites.parti import load_parti
from ckptbench.suites.toml_suite import load_suite_file, write_suite_file

STYLES = ("Anime", "Manga", "Photographic", "Isometric", "Low_Poly", "Line_Art", "3D_Model", "Pixel_Art", "Watercolor")


def _image(path: Path, infotext: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    if infotext is not None:
        info.add_text("parameters", infotext)
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path, pnginfo=info)
    return path


# --- ckptbench TOML -----------------------------------------------------------------------------


def test_suite_file_cases_references_and_defaults(tmp_path: Path) -> None:
    _image(tmp_path / "refs" / "ink" / "1.png")
    _image(tmp_path / "refs" / "ink" / "2.png")
    _image(tmp_path / "refs" / "single.png")
    suite = tmp_path / "mine.toml"
    suite.write_text('''
[suite]
kind = "lora"
references = "refs"
negative_prompt = "blurry"
lora_files = { inkstyle = "InkStyle_v2.safetensors" }

[[cases]]
prompt = "a heron, <lora:inkstyle:0.6>"
references = ["ink", "single.png"]
loras = ["helper", { name = "detail", weight = 0.3 }]
showcase_models = ["revAnimated_v122"]

[[cases]]
id = "second"
prompt = "a crane"
negative_prompt = ""
''')
    cases, _ = load_suite_file(suite, "mine")
    first, second = cases
    assert first.case_id == "000" and second.case_id == "second"
    assert first.kind == "lora" and first.negative_prompt == "blurry" and second.negative_prompt == ""
    assert [p.name for p in first.references] == ["1.png", "2.png", "single.png"]
    assert first.loras == (LoraTag("helper"), LoraTag("detail", 0.3))
    assert dict(first.lora_files) == {"inkstyle": "InkStyle_v2.safetensors"}
    assert first.showcase_models == ("revAnimated_v122",)


def test_suite_file_errors_name_file_field_and_fix(tmp_path: Path) -> None:
    suite = tmp_path / "bad.toml"
    suite.write_text('[[cases]]\nprompt = "x"\nrefrences = ["a"]\n')
    with pytest.raises(SuiteError) as caught:
        load_suite_file(suite, "bad")
    assert str(suite) in str(caught.value) and "cases[0].refrences" in str(caught.value)
    assert "did you mean 'references'" in str(caught.value)
    suite.write_text('[[cases]]\nprompt = "x"\nreferences = ["missing-folder"]\n')
    with pytest.raises(SuiteError, match="reference 'missing-folder' not found"):
        load_suite_file(suite, "bad")
    suite.write_text('[[cases]]\nid = "a"\nprompt = "x"\n[[cases]]\nid = "a"\nprompt = "y"\n')
    with pytest.raises(SuiteError, match="used twice"):
        load_suite_file(suite, "bad")


def test_suite_file_round_trip(tmp_path: Path) -> None:
    reference = _image(tmp_path / "shots" / "a.png")
    cases = [Case("s", "a", 'say "hi"\nnew line', negative_prompt="ugly", loras=(LoraTag("x", 0.5), LoraTag("y")),
                  style="Anime", references=(reference,), tags=("t",), kind="style", showcase_models=("m",),
                  lora_files=(("x", "autov2:0123456789"),))]
    path = write_suite_file(tmp_path / "out" / "suite.toml", cases, name="s", kind="style")
    assert "../shots/a.png" in path.read_text()
    loaded, parsed = load_suite_file(path, "s")
    assert parsed.suite.kind == "style"
    assert loaded[0] == Case("s", "a", 'say "hi"\nnew line', negative_prompt="ugly", loras=cases[0].loras,
                             style="Anime", references=(reference.resolve(),), tags=("t",), kind="style",
                             label="Anime", showcase_models=("m",), lora_files=(("x", "autov2:0123456789"),))


# --- builtin suites -------------------------------------------------------------------------------


def test_builtin_quality_suite_spans_three_families() -> None:
    cases, _ = load_suite_file(builtin_suite_path("quality"), "quality")
    assert len(cases) == 30 and len({c.prompt for c in cases}) == 30
    families = [c.tags[0] for c in cases]
    assert families.count("photographic") == 10 and families.count("painterly") == 10
    assert families.count("anime") + families.count("illustration") == 10


def test_builtin_styles_suite_uses_the_users_reference_folders(tmp_path: Path) -> None:
    for style in STYLES:
        _image(tmp_path / "refs" / style / "r1.png")
    cases, _ = load_suite_file(builtin_suite_path("styles"), "styles", references=tmp_path / "refs")
    assert [c.style for c in cases] == list(STYLES)
    assert all(c.kind == "style" and len(c.references) == 1 for c in cases)
    with pytest.raises(SuiteError, match="check the spec's `references` folder"):
        load_suite_file(builtin_suite_path("styles"), "styles", references=tmp_path / "elsewhere")


# --- GhostReview ------------------------------------------------------------------------------


def test_ghostreview_loaders_on_the_release(shared_data: Path) -> None:
    release = shared_data / "ghostreview"
    prompts = ghostreview.load_prompts(release, "q")
    assert len(prompts) == 30 and prompts[0].case_id == "000"
    with (release / ghostreview.PROMPTS_CSV).open(newline="") as handle:
        first = next(csv.DictReader(handle))
    assert prompts[0].prompt == first["Prompts"]

    styles = ghostreview.load_styles(release, "s")
    assert [c.style for c in styles][:3] == ["Anime", "Manga", "Photographic"]
    assert [len(c.references) for c in styles] == [40, 31, 20, 20, 17, 19, 28, 35, 20]

    loras = ghostreview.load_loras(release, "l")
    assert len(loras) == 16 and all(c.kind == "lora" and len(c.references) == 1 for c in loras)
    assert loras[1].showcase_models == ("revAnimated_v122.safetensors",) and loras[9].showcase_models == ()
    assert loras[14].label == "Colorwater_v4" and dict(loras[14].lora_files) == {"try2": "Colorwater_v4.safetensors"}
    assert loras[0].lora_files == ()  # two tags: which one is MoXin is for the user's mapping to say
    assert loras[1].lora_files == ()  # its tag already names the file


def test_ghostreview_loader_errors(shared_data: Path, tmp_path: Path) -> None:
    csv_file = shared_data / "ghostreview" / ghostreview.STYLES_CSV
    with pytest.raises(SuiteError, match="set `references`"):
        ghostreview.load_styles(csv_file, "s")
    (tmp_path / "0").mkdir()
    with pytest.raises(SuiteError, match="no reference images"):
        ghostreview.load_styles(csv_file, "s", references=tmp_path)
    with pytest.raises(SuiteError, match="GhostReview file not found"):
        ghostreview.load_prompts(tmp_path, "q")


# --- PartiPrompts -----------------------------------------------------------------------------------


def test_parti_filters(shared_data: Path) -> None:
    tsv = shared_data / "prompts" / "PartiPrompts.tsv"
    with tsv.open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    animals = load_parti(tsv, "p", category=["animals"])
    assert len(animals) == sum(r["Category"] == "Animals" for r in rows)
    both = load_parti(tsv, "p", category=["Animals", "Vehicles"], challenge=["Basic"])
    assert len(both) == sum(r["Category"] in ("Animals", "Vehicles") and r["Challenge"] == "Basic" for r in rows)
    first = both[0]
    assert first.prompt == rows[int(first.case_id)]["Prompt"] and first.label in ("Animals", "Vehicles")
    assert len(load_parti(tsv, "p", limit=7)) == 7
    with pytest.raises(SuiteError, match="did you mean 'Animals'"):
        load_parti(tsv, "p", category=["Animal"])


# --- infotext -------------------------------------------------------------------------------------


SHOWCASE = ('masterpiece, a fox in the snow, <lora:winterFox:0.7>\nNegative prompt: lowres, bad hands\n'
            'Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 6, Seed: 42, Size: 512x768, '
            'Model hash: 4199bcdd14, Model: revAnimated_v122, Lora hashes: "winterFox: 0123456789ab"')


def test_cases_from_images_png_jpeg_and_sidecar(tmp_path: Path) -> None:
    _image(tmp_path / "shots" / "01 fox.png", SHOWCASE)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + "a castle\nSteps: 20, Sampler: Euler, CFG scale: 7".encode(
        "utf-16-be")
    Image.new("RGB", (8, 8)).save(tmp_path / "shots" / "02.jpg", exif=exif)
    _image(tmp_path / "shots" / "03.png")
    (tmp_path / "shots" / "03.txt").write_text("a tower\nSteps: 20, Sampler: Euler, CFG scale: 7")
    _image(tmp_path / "shots" / "04.png")  # no infotext at all
    cases, skipped = cases_from_images(tmp_path / "shots", "show")
    assert [c.case_id for c in cases] == ["01-fox", "02", "03"] and [p.name for p in skipped] == ["04.png"]
    fox = cases[0]
    assert fox.kind == "lora" and fox.label == "winterFox" and fox.negative_prompt == "lowres, bad hands"
    assert fox.showcase_models == ("revAnimated_v122", "4199bcdd14")
    assert fox.lora_files == (("winterFox", "autov3:0123456789ab"),)
    assert cases[1].prompt == "a castle" and cases[1].kind == "quality" and cases[2].prompt == "a tower"


def test_lora_hashes_kinds() -> None:
    assert lora_hashes("a: 0123456789, b: 0123456789ab, c: " + "f" * 64) == (
        ("a", "autov2:0123456789"), ("b", "autov3:0123456789ab"), ("c", "sha256:" + "f" * 64))


def test_import_infotext_command_writes_a_suite_file(tmp_path: Path) -> None:
    _image(tmp_path / "shots" / "fox.png", SHOWCASE)
    _image(tmp_path / "shots" / "plain.png")
    out_file = tmp_path / "suites" / "showcase.toml"
    outcome = CliRunner().invoke(app, ["import", "infotext", str(tmp_path / "shots"), "--out", str(out_file)])
    assert outcome.exit_code == 0, outcome.output
    assert "1 case(s), kind lora" in outcome.output and "plain.png" in outcome.output
    cases, parsed = load_suite_file(out_file, "showcase")
    assert parsed.suite.name == "showcase" and parsed.suite.kind == "lora"
    assert cases[0].references == ((tmp_path / "shots" / "fox.png").resolve(),)
    assert cases[0].showcase_models == ("revAnimated_v122", "4199bcdd14")
    bad = CliRunner().invoke(app, ["import", "infotext", str(tmp_path / "nowhere")])
    assert bad.exit_code == 2 and "not found" in bad.output
