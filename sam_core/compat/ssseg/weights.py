"""Weights for the sssegmentation-compatible classes: the files its ``use_default_*`` flags name, downloaded
once into sam_core's cache, ``ckptpath`` (a local file or a URL) read into a model, and the device.

Downloads go to ``<cache>/<file name>.part`` and are renamed into place only once checked: against the sha256
sam_core knows for Meta's SAM files (``sam_core.registry.OFFICIAL_CHECKPOINTS``), otherwise by loading the
file into the architecture it is meant for. An interrupted download resumes from its ``.part`` file (HTTP
Range). The cache is ``$SAM_CORE_CACHE`` or ``~/.cache/sam_core``, as for ``sam_core.load_sam``'s downloads;
``SAM_CORE_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) forbids downloading.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sam_core.errors import CheckpointError
from sam_core.io.checkpoints import load_checkpoint
from sam_core.models.sam2 import Sam2Config, Sam2Video, build_sam2_video
from sam_core.registry import OFFICIAL_CHECKPOINTS, build_model

SSSEG_CHECKPOINT_URLS: dict[str, str] = {
    # The files sssegmentation 1.7.0's use_default_* flags load. Tests point entries at a local server.
    "use_default_sam_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    "use_default_sam_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "use_default_sam_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    "use_default_samhq_h": "https://huggingface.co/lkeab/hq-sam/resolve/main/sam_hq_vit_h.pth",
    "use_default_samhq_l": "https://huggingface.co/lkeab/hq-sam/resolve/main/sam_hq_vit_l.pth",
    "use_default_samhq_b": "https://huggingface.co/lkeab/hq-sam/resolve/main/sam_hq_vit_b.pth",
    "use_default_samhq_t_5m": "https://huggingface.co/lkeab/hq-sam/resolve/main/sam_hq_vit_tiny.pth",
    "use_default_sam_t_5m": "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_mobilesam/"
                            "sam_vit_t_5m.pth",
    "use_default_samv2_t": "https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_tiny.pt",
    "use_default_samv2_s": "https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_small.pt",
    "use_default_samv2_bplus": "https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_base_plus.pt",
    "use_default_samv2_l": "https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_large.pt",
    "use_default_edgesam": "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_edgesam/"
                           "edge_sam.pth",
    "use_default_edgesam_3x": "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_edgesam/"
                              "edge_sam_3x.pth",
}
_CHUNK = 1 << 20


def chosen_flag(cfg: dict[str, Any] | None, flags: dict[str, bool], cfg_name: str) -> str | None:
    """The one ``use_default_*`` flag set, or None; ``ValueError`` for several flags, or a flag and ``cfg``."""
    chosen = [name for name, on in flags.items() if on]
    if len(chosen) > 1:
        raise ValueError(f"set at most one of {list(flags)}; got {chosen}")
    if cfg is not None and chosen:
        raise ValueError(f"give either {cfg_name} or {chosen[0]}=True, not both")
    return chosen[0] if chosen else None


def resolve_device(device: str | torch.device) -> torch.device:
    """``device``, except that CUDA falls back to the CPU (with a warning) where there is none: sssegmentation
    defaults to ``"cuda"``, and code written for it should still run on a laptop."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        warnings.warn(f"device={str(device)!r} but CUDA is not available: running on the CPU", stacklevel=3)
        return torch.device("cpu")
    return device


def cache_dir() -> Path:
    """Where downloaded checkpoints are kept (sam_core's cache)."""
    return Path(os.environ.get("SAM_CORE_CACHE") or "~/.cache/sam_core").expanduser()


def known_sha256(url: str) -> str | None:
    """The sha256 sam_core knows for the file a URL names (Meta's SAM files), else None."""
    name = url.rsplit("/", 1)[-1]
    for entry in OFFICIAL_CHECKPOINTS.values():
        if entry.filename == name and entry.sha256:
            return entry.sha256
    return None


def fetch(url: str, check: Callable[[Path], Any]) -> Path:
    """The cached copy of ``url``, downloaded first if needed (resuming an earlier partial download).

    Args:
        url: an http(s) URL.
        check: called with the complete download when its sha256 is not known; raises if the file is not
            the expected checkpoint (it is then deleted).

    Returns:
        The path of the file in the cache.

    Raises:
        CheckpointError: offline, unreachable, or a download that fails its check; the message names the
            file and where to put it by hand.
    """
    target = cache_dir() / url.rsplit("/", 1)[-1]
    if target.is_file():
        return target
    sha256 = known_sha256(url)
    how_to_fix = (f"download {url}{f' (sha256 {sha256})' if sha256 else ''} yourself and put it at {target} "
                  "(or set SAM_CORE_CACHE to the folder holding it), or pass its path as ckptpath")
    if any(os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}
           for name in ("SAM_CORE_OFFLINE", "HF_HUB_OFFLINE")):
        raise CheckpointError(f"offline and {target.name} is not in the cache; {how_to_fix}")
    part = target.with_name(target.name + ".part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _download(url, part)
    except (urllib.error.URLError, OSError) as error:
        raise CheckpointError(f"could not download {target.name} from {url} ({error}); {how_to_fix}. A partial "
                              f"download is kept at {part} and resumed next time") from None
    try:
        if sha256 is not None:
            if (digest := _sha256(part)) != sha256:
                raise CheckpointError(f"sha256 mismatch: got {digest}, expected {sha256}")
        else:
            check(part)
    except (CheckpointError, RuntimeError, ValueError) as error:
        part.unlink(missing_ok=True)
        raise CheckpointError(f"the download of {url} is not the expected checkpoint and was deleted ({error}); "
                              f"{how_to_fix}") from None
    os.replace(part, target)
    return target


def _download(url: str, part: Path) -> None:
    """Append the rest of ``url`` to ``part`` (all of it if the server ignores the Range header)."""
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as error:
        if error.code == 416:  # nothing after the bytes we have: the earlier download was complete
            return
        raise
    with response, open(part, "ab" if response.status == 206 else "wb") as handle:
        while chunk := response.read(_CHUNK):
            handle.write(chunk)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load_model(config: Any, ckptpath: str | None, strict: bool, device: torch.device, video: bool = False,
               ) -> torch.nn.Module:
    """A sam_core model of ``config`` on ``device``, with the weights of ``ckptpath`` or random ones.

    Args:
        config: a sam_core config (SamConfig, MobileSamConfig, SamHqConfig, EdgeSamConfig, Sam2Config).
        ckptpath: None, a local file, or an http(s) URL (fetched into the cache). sssegmentation's files are
            Meta's layouts (SAM 2's hold ``{"model": state_dict}``; EdgeSAM's are its flat state dict), which
            sam_core reads as they are.
        strict: sssegmentation's ``load_ckpt_strict``: False leaves the tensors the file lacks at their
            random values and ignores the ones the model lacks.
        video: build SAM 2's video model (the image model plus its memory modules).

    Raises:
        ValueError: ``ckptpath`` is neither an existing file nor a URL (sssegmentation would silently keep
            random weights). CheckpointError: the file does not fit the model.
    """
    if video and not isinstance(config, Sam2Config):
        raise ValueError("only SAM 2 models have a video model")
    if ckptpath is None:
        model = _build(config, video)
    elif os.path.isfile(ckptpath):
        model = _read(config, Path(ckptpath), strict, video)
    elif str(ckptpath).startswith(("http://", "https://")):
        # A download is kept only if it loads: into the model (strict) or covering every tensor of the model.
        model = _read(config, fetch(ckptpath, lambda path: _read(config, path, strict, video, complete=True)),
                      strict, video)
    else:
        raise ValueError(f"ckptpath {ckptpath!r} is neither an existing file nor an http(s) URL")
    return model.to(device).eval()


def _build(config: Any, video: bool) -> torch.nn.Module:
    if video:
        return build_sam2_video(config)
    return build_model(config)


def _read(config: Any, path: Path, strict: bool, video: bool, complete: bool = False) -> torch.nn.Module:
    if strict:
        loaded = load_checkpoint(path, config=config)
        return Sam2Video.from_image_model(loaded.model, loaded.extras) if video else loaded.model
    model = _build(config, video)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # SAM 2's layout
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict")
    missing, _ = model.load_state_dict(state, strict=False)
    if complete and missing:
        raise CheckpointError(f"{path} lacks {len(missing)} of the model's tensors, e.g. {missing[:5]}")
    return model
