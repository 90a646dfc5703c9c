"""Find timm's pretrained weights in the Hugging Face hub cache.

The cache location is read from the environment at call time (``HF_HUB_CACHE``, else
``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``), so it works offline
(``HF_HUB_OFFLINE=1``) whenever the weights are already cached. Only when the weights are not
cached and the hub is not offline does it try to download them.
"""

from __future__ import annotations

import os
from pathlib import Path

from modelsurgeon.errors import InputError, UsageError

__all__ = ["WEIGHT_FILES", "hub_cache_dir", "locate_pretrained"]

# timm's own order of preference for weight files in a hub repo.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors")


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache directory, as the environment says now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(home) / "hub"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def locate_pretrained(repo_id: str | None, *, arch_label: str) -> Path:
    """Return the local path of a timm arch's pretrained weights.

    Args:
        repo_id: The hub repo, e.g. ``timm/vit_base_patch16_224.augreg2_in21k_ft_in1k`` (``None`` when
            the arch has no pretrained weights on the hub, e.g. torchvision archs).
        arch_label: The arch as the user wrote it, for messages.

    Returns:
        The path of the cached (or freshly downloaded) weight file.

    Raises:
        UsageError: The arch has no hub weights (pass ``--checkpoint``).
        InputError: The weights are not cached and cannot be downloaded.
    """
    if repo_id is None:
        raise UsageError(
            f"{arch_label} has no pretrained weights on the Hugging Face hub",
            "pass --checkpoint PATH (torchvision archs always need one)",
        )
    from huggingface_hub import try_to_load_from_cache

    revision = None
    if "@" in repo_id:
        repo_id, revision = repo_id.split("@", 1)
    cache = hub_cache_dir()
    for filename in WEIGHT_FILES:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=cache, revision=revision)
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    if _offline():
        raise InputError(
            f"pretrained weights for {arch_label} ({repo_id}) are not in the hub cache {cache} "
            "and HF_HUB_OFFLINE is set",
            "pass --checkpoint PATH, or download them first",
        )
    return _download(repo_id, revision, cache, arch_label)


def _download(repo_id: str, revision: str | None, cache: Path, arch_label: str) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    last: Exception | None = None
    for filename in WEIGHT_FILES:
        try:
            return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache))
        except EntryNotFoundError as exc:
            last = exc
            continue
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
            last = exc
            break
    raise InputError(
        f"cannot get pretrained weights for {arch_label} ({repo_id}): {type(last).__name__}",
        "pass --checkpoint PATH (no network?)",
    ) from last
