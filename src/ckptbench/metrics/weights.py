"""Finding scorer weights: local files and folders, or the Hugging Face cache (downloaded if reachable)."""

from __future__ import annotations

from pathlib import Path

from ckptbench.errors import WeightsUnavailableError

HUB_FILE_PREFIX = "hf:"


def resolve_folder(source: str, scorer: str) -> Path:
    """A local folder as given, or a hub repo's snapshot from the cache (downloaded only if missing)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.is_absolute() or source.startswith("."):
        raise WeightsUnavailableError(
            f"scorer '{scorer}': model folder {source} does not exist; fix [scorers.{scorer}] model.")
    from huggingface_hub import snapshot_download

    for local_only in (True, False):
        try:
            return Path(snapshot_download(source, local_files_only=local_only))
        except Exception:
            continue
    raise WeightsUnavailableError(
        f"scorer '{scorer}': model '{source}' is not in the local Hugging Face cache and the hub is not "
        f"reachable; run `hf download {source}` where it is, or set [scorers.{scorer}] model = "
        '"<local folder with the model>".'
    )


def resolve_file(source: str, scorer: str) -> Path:
    """A local file, or ``hf:org/repo/path/in/repo`` from the cache (downloaded only if missing)."""
    if not source.startswith(HUB_FILE_PREFIX):
        path = Path(source).expanduser()
        if path.is_file():
            return path
        raise WeightsUnavailableError(
            f"scorer '{scorer}': head file {source} does not exist; fix [scorers.{scorer}] head.")
    org, repo, filename = source[len(HUB_FILE_PREFIX):].split("/", 2)
    from huggingface_hub import hf_hub_download

    for local_only in (True, False):
        try:
            return Path(hf_hub_download(f"{org}/{repo}", filename, local_files_only=local_only))
        except Exception:
            continue
    raise WeightsUnavailableError(
        f"scorer '{scorer}': head weights '{filename}' from hub repo '{org}/{repo}' are not in the local "
        f"cache and the hub is not reachable; download that file where it is and set [scorers.{scorer}] "
        'head = "<path to the file>".'
    )
