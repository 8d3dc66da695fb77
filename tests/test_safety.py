"""Hostile and broken model files: never executed, never half-loaded, always one clear message."""

from __future__ import annotations

import builtins
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from ckptbench.cli import app
from ckptbench.demo.tiny import original_layout_state, tiny_sd15_pipeline
from ckptbench.errors import ModelFileError
from ckptbench.generate.loading import load_pipeline
from ckptbench.models.checkpoint import resolve_checkpoint
from ckptbench.models.safety import UnsafeModelFileError, load_pickle_tensors, read_safetensors_header
from ckptbench.spec import CheckpointSpec

SRC = Path(__file__).resolve().parents[1] / "src"


class _Payload:
    """Unpickling this calls ``function(*arguments)``: what a hostile checkpoint does to create a file."""

    def __init__(self, function, *arguments) -> None:
        self.function, self.arguments = function, arguments

    def __reduce__(self):
        return self.function, self.arguments


class _ImportedFunction:
    """Unpickled, this becomes ``getattr(__import__(module), name)``: the function a payload calls is itself
    built by nested reduce calls, so the pickle names no dangerous global at all, only getattr and
    __import__ (what defeats scanners that look for ``os.system``)."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __reduce__(self):
        return getattr, (_Payload(builtins.__import__, self.module), self.name)

    def __call__(self, *arguments):  # pickle only checks that the function is callable
        raise AssertionError("called only by unpickling")


def _payloads(marker: Path) -> dict[str, object]:
    return {
        "os.system": _Payload(os.system, f"touch '{marker}'"),
        "builtins.exec": _Payload(builtins.exec, f"open({str(marker)!r}, 'w').write('pwned')"),
        "subprocess": _Payload(subprocess.call, ["touch", str(marker)]),
        "nested __reduce__": _Payload(_ImportedFunction("os", "system"), f"touch '{marker}'"),
    }


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[dict[str, Path], Path]:
    """Pickles whose loading would create ``marker``: raw pickles, torch zip archives, a disguised one."""
    marker = tmp_path / "PWNED"
    folder = tmp_path / "hostile"
    folder.mkdir()
    files: dict[str, Path] = {}
    for name, payload in _payloads(marker).items():
        name = name.replace(" ", "-")
        raw = folder / f"raw-{name}.ckpt"
        # Nested inside an otherwise normal-looking checkpoint, as a real attack would be.
        raw.write_bytes(pickle.dumps({"state_dict": {"w": payload}, "global_step": 1}, protocol=2))
        files[f"raw {name}"] = raw
        archive = folder / f"zip-{name}.pt"
        torch.save({"state_dict": {"w": torch.ones(2)}, "callbacks": payload}, archive)
        files[f"zip {name}"] = archive
    assert len(files) == 2 * len(_payloads(marker))
    disguised = folder / "disguised.safetensors"
    disguised.write_bytes(files["zip os.system"].read_bytes())
    files["zip renamed .safetensors"] = disguised
    raw_disguised = folder / "raw-disguised.safetensors"
    raw_disguised.write_bytes(files["raw os.system"].read_bytes())
    files["raw renamed .safetensors"] = raw_disguised
    return files, marker


def test_the_payloads_are_live(tmp_path: Path) -> None:
    """Control: a plain unpickler really runs them (in a child process), so the refusals below mean something."""
    for name, payload in _payloads(tmp_path / "control").items():
        marker = tmp_path / f"control-{name.replace('.', '-').replace(' ', '-')}"
        data = pickle.dumps(_payloads(marker)[name], protocol=2)
        subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],
                       input=data, check=False, capture_output=True)
        assert marker.exists(), name
        del payload
    archive = tmp_path / "control.pt"
    torch.save({"x": _Payload(os.system, f"touch '{tmp_path / 'control-zip'}'")}, archive)
    with zipfile.ZipFile(archive) as opened:
        inner = next(n for n in opened.namelist() if n.endswith("data.pkl"))
        data = opened.read(inner)
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],
                   input=data, check=False, capture_output=True)
    assert (tmp_path / "control-zip").exists()


@pytest.mark.parametrize("allow", [False, True])
def test_inspect_refuses_every_hostile_file(hostile, allow: bool) -> None:
    files, marker = hostile
    runner = CliRunner()
    for name, path in files.items():
        args = ["inspect", str(path), "--json"] + (["--allow-pickle"] if allow else [])
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (name, result.output)
        report = json.loads(result.stdout)
        assert report["safe"] is False and str(path) in report["error"], name
        assert report["sha256"] and report["autov2"] == report["sha256"][:10].upper()
        if "renamed" in name:
            assert "named .safetensors but it is" in report["error"]
        elif allow:
            assert "restricted unpickler" in report["error"] and "GLOBAL" in report["error"], report["error"]
        else:
            assert "can run arbitrary code" in report["error"] and "--allow-pickle" in report["error"]
        assert "weights_only` set to `False`" not in report["error"]  # never relay torch's advice to switch it off
    assert not marker.exists()


@pytest.mark.parametrize("allow", [False, True])
def test_convert_refuses_every_hostile_pickle(hostile, tmp_path: Path, allow: bool) -> None:
    files, marker = hostile
    runner = CliRunner()
    for name, path in files.items():
        target = tmp_path / f"{path.stem}.out.safetensors"
        result = runner.invoke(app, ["convert", str(path), str(target)] + (["--allow-pickle"] if allow else []))
        assert result.exit_code == 2, (name, result.output)
        assert "Traceback" not in result.output and not target.exists()
        message = " ".join(result.output.split())
        assert str(path) in message, message
        if "renamed" in name:
            assert "named .safetensors but it is" in message, message
        elif allow:
            assert "restricted unpickler" in message and "GLOBAL" in message, message
        else:
            assert "can run arbitrary code" in message and "--allow-pickle" in message, message
        assert not list(tmp_path.glob(f".{target.name}.*")), "no temporary file left behind"
    assert not marker.exists()


def test_run_refuses_every_hostile_file_and_goes_on(hostile, write_spec, tiny_models, tmp_path: Path) -> None:
    """Every hostile file as a checkpoint, with and without allow_pickle; the zip and raw pickles also as a
    LoRA and as an embedding, opted in (the riskier setting). The good checkpoint's good case is made."""
    files, marker = hostile
    blocks = [f'[[checkpoints]]\nname = "good"\npath = "{tiny_models["single_a"]}"\n'
              f'config = "{tiny_models["config"]}"\n']
    names = {label: label.replace(" ", "-").replace(".", "-").replace("_", "") for label in files}
    for label, path in files.items():
        for allow in (False, True):
            blocks.append(f'[[checkpoints]]\nname = "{names[label]}-{allow}"\npath = "{path}"\n'
                          f'allow_pickle = {str(allow).lower()}\n')
    loras, embeddings = tmp_path / "loras", tmp_path / "embeddings"
    loras.mkdir()
    embeddings.mkdir()
    for kind in ("zip", "raw"):
        (loras / f"evil{kind}.pt").write_bytes(files[f"{kind} os.system"].read_bytes())
        (embeddings / f"evil{kind}emb.pt").write_bytes(files[f"{kind} nested-__reduce__"].read_bytes())
    spec = write_spec(checkpoints="\n".join(blocks),
                      generation=f'sampler = "Euler"\nsteps = 2\nwidth = 64\nheight = 64\nseeds = [1]\n'
                                 f'lora_dirs = ["{loras}"]\nallow_pickle_loras = true\n'
                                 f'embedding_dirs = ["{embeddings}"]\nallow_pickle_embeddings = true',
                      suites='[[suites]]\nname = "q"\nprompts = ["a red cube", "a cube <lora:evilzip>", '
                             '"a cube <lora:evilraw>", "a cube evilzipemb", "a cube evilrawemb"]')
    result = CliRunner().invoke(app, ["run", str(spec)])
    assert result.exit_code == 3, result.output  # partial: the hostile files' work is missing
    assert not marker.exists()
    results = json.loads((spec.parent / "store" / "results.json").read_text())
    entries = {entry["name"]: entry for entry in results["checkpoints"]}
    assert entries["good"]["status"] == "partial"
    assert entries["good"]["images"] == {"planned": 5, "ok": 1, "failed": 4}
    assert entries["good"]["model"]["family"] == "sd15"
    for label, path in files.items():
        refused, opted_in = entries[f"{names[label]}-False"], entries[f"{names[label]}-True"]
        assert refused["status"] == opted_in["status"] == "failed"
        assert str(path) in refused["error"] and str(path) in opted_in["error"]
        if "renamed" in label:
            assert "named .safetensors but it is" in refused["error"] and "named .safetensors" in opted_in["error"]
        else:
            assert "can run arbitrary code" in refused["error"] and "allow_pickle = true for checkpoint" in \
                refused["error"]
            assert "restricted unpickler" in opted_in["error"] and "GLOBAL" in opted_in["error"]
    image_failures = [f["message"] for f in results["failures"] if f["scope"] == "image"]
    for name in ("evilzip.pt", "evilraw.pt", "evilzipemb.pt", "evilrawemb.pt"):
        (message,) = [m for m in image_failures if name in m]
        assert "weights_only=True" in message, message


def _tiny_state() -> dict[str, torch.Tensor]:
    return {"model.diffusion_model.w": torch.arange(6, dtype=torch.float32).reshape(2, 3),
            "model.diffusion_model.b": torch.ones(4, dtype=torch.float16)}


def _header_file(path: Path, header: dict | bytes, data: bytes, length: int | None = None) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


def _broken(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = tmp_path / "good.safetensors"
    save_file(_tiny_state(), str(good))
    blob = good.read_bytes()
    (size,) = struct.unpack("<Q", blob[:8])
    header, data = json.loads(blob[8 : 8 + size]), blob[8 + size :]
    w = "model.diffusion_model.w"
    lie = json.loads(json.dumps(header))
    lie[w]["shape"] = [4, 3]  # 48 bytes claimed, 24 given
    beyond = json.loads(json.dumps(header))
    beyond[w]["shape"] = [2, 300]
    beyond[w]["data_offsets"] = [beyond[w]["data_offsets"][0], beyond[w]["data_offsets"][0] + 2400]
    other = "model.diffusion_model.b"
    beyond[other]["data_offsets"] = [beyond[w]["data_offsets"][1], beyond[w]["data_offsets"][1] + 8]
    overlap = json.loads(json.dumps(header))
    start = overlap[w]["data_offsets"][0]
    overlap[other]["data_offsets"] = [start, start + 8]
    overlap[other]["shape"] = [4]
    dtype = json.loads(json.dumps(header))
    dtype[w]["dtype"] = "Q7"
    duplicate = blob[8 : 8 + size].decode().replace(f'"{other}"', f'"{w}"').encode()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(blob[:-10])
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    return {
        "truncated": (truncated, "the file is truncated"),
        "lying header": (_header_file(tmp_path / "lie.safetensors", lie, data), "the header lies about tensor"),
        "beyond the file": (_header_file(tmp_path / "beyond.safetensors", beyond, data), "the file is truncated"),
        "huge header": (_header_file(tmp_path / "huge.safetensors", header, data, length=2**40), "over the"),
        "header past the end": (_header_file(tmp_path / "past.safetensors", header, data, length=10**6),
                                "the file has only"),
        "duplicate names": (_header_file(tmp_path / "dup.safetensors", duplicate, data), "twice"),
        "overlapping": (_header_file(tmp_path / "overlap.safetensors", overlap, data), "overlap"),
        "unknown dtype": (_header_file(tmp_path / "dtype.safetensors", dtype, data), "unknown dtype 'Q7'"),
        "not json": (_header_file(tmp_path / "json.safetensors", b"{not json", data), "not valid JSON"),
        "trailing bytes": (_header_file(tmp_path / "trail.safetensors", header, data + b"junk"), "belong to no tensor"),
        "zero bytes": (empty, "0 bytes is too short"),
    }


def test_valid_header_is_read(tmp_path: Path) -> None:
    path = tmp_path / "ok.safetensors"
    save_file(_tiny_state(), str(path), metadata={"modelspec.title": "x"})
    header = read_safetensors_header(path)
    assert header.tensors["model.diffusion_model.w"].shape == (2, 3)
    assert header.metadata == {"modelspec.title": "x"}


def test_broken_safetensors_give_one_clear_message_each(tmp_path: Path) -> None:
    for name, (path, phrase) in _broken(tmp_path).items():
        with pytest.raises(ModelFileError) as caught:
            read_safetensors_header(path)
        message = str(caught.value)
        assert str(path) in message and phrase in message, (name, message)
        assert "\n" not in message


def test_broken_files_fail_in_inspect_and_resolve(tmp_path: Path) -> None:
    runner = CliRunner()
    for name, (path, phrase) in _broken(tmp_path).items():
        result = runner.invoke(app, ["inspect", str(path), "--json"])
        assert result.exit_code == 2, name
        assert phrase in json.loads(result.stdout)["error"], name
        with pytest.raises(ModelFileError, match="checkpoint 'x'"):
            resolve_checkpoint(CheckpointSpec(name="x", path=path))


def test_opted_in_benign_ckpt_loads_like_its_safetensors_twin(tmp_path: Path, tiny_models) -> None:
    state = load_file(str(tiny_models["single_a"]))
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": state, "global_step": 470000, "epoch": 6}, ckpt)
    spec = CheckpointSpec(name="c", path=ckpt, config=tiny_models["config"])
    with pytest.raises(UnsafeModelFileError, match="allow_pickle = true for checkpoint 'c'"):
        resolve_checkpoint(spec)
    resolved = resolve_checkpoint(spec.model_copy(update={"allow_pickle": True}))
    assert resolved.file_format == "pickle" and resolved.family == "sd15"
    twin = resolve_checkpoint(CheckpointSpec(name="s", path=tiny_models["single_a"], config=tiny_models["config"]))
    loaded = load_pipeline(resolved, torch.device("cpu"), torch.float32)
    expected = load_pipeline(twin, torch.device("cpu"), torch.float32)
    for module in ("unet", "vae", "text_encoder"):
        for (key, a), b in zip(getattr(expected, module).state_dict().items(),
                               getattr(loaded, module).state_dict().values(), strict=True):
            assert torch.equal(a, b), key
    # convert: refused without the flag, exact tensors with it, and its own header passes our checks.
    runner = CliRunner()
    out = tmp_path / "model.safetensors"
    assert runner.invoke(app, ["convert", str(ckpt), str(out)]).exit_code == 2 and not out.exists()
    converted = runner.invoke(app, ["convert", str(ckpt), str(out), "--allow-pickle"])
    assert converted.exit_code == 0, converted.output
    back = load_file(str(out))
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)
    assert read_safetensors_header(out).metadata["ckptbench.pickle.global_step"] == "470000"


def test_pickle_holding_something_else_than_tensors_is_refused(tmp_path: Path) -> None:
    listed = tmp_path / "list.pt"
    torch.save({"state_dict": {"w": [torch.ones(1)]}}, listed)
    with pytest.raises(UnsafeModelFileError, match="entry 'w' is a list, not a tensor"):
        load_pickle_tensors(listed)
    bare = tmp_path / "bare.pt"
    torch.save(torch.ones(3), bare)
    with pytest.raises(UnsafeModelFileError, match="holds a Tensor, not a mapping"):
        load_pickle_tensors(bare)


def test_tied_weights_convert(tmp_path: Path) -> None:
    shared = torch.randn(4, 4)
    source = tmp_path / "tied.pt"
    torch.save({"a": shared, "b": shared, "c": shared[0]}, source)
    assert CliRunner().invoke(app, ["convert", str(source), str(tmp_path / "t.safetensors"),
                                    "--allow-pickle"]).exit_code == 0
    back = load_file(str(tmp_path / "t.safetensors"))
    assert torch.equal(back["a"], shared) and torch.equal(back["b"], shared) and torch.equal(back["c"], shared[0])


def test_the_unsafe_torch_load_flag_never_appears_in_the_code() -> None:
    forbidden = ("weights_only" + "=False", "weights_only" + " = False")
    offenders = [str(path) for path in SRC.rglob("*.py") if any(f in path.read_text() for f in forbidden)]
    assert offenders == []


def test_tiny_state_is_original_layout() -> None:
    """Sanity: the hostile-run test's good checkpoint really is an SD1 original-layout file."""
    state = original_layout_state(tiny_sd15_pipeline(seed=1))
    assert any(k.startswith("cond_stage_model.transformer.text_model.") for k in state)
