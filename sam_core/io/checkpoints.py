"""Load and save the weights of every model family.

:func:`load_sam` reads Meta's ``.pth`` / ``.pt`` files, Hugging Face checkpoints (a folder or a hub id), sam_core's
own safetensors files (:func:`save_sam`), state dicts in memory and registry names (official files, downloaded
once and sha256-checked); the family is recognised from the tensor names.

Sources, file format and downloads: docs/checkpoints.md."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch
from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from sam_core.errors import CheckpointError
from sam_core.interface import ModelFamily, OfficialCheckpoint, PromptableSegmenter, StateDict
from sam_core.io.files import write_atomically
from sam_core.models.sam.hf_format import hf_to_meta_state_dict, sam_config_from_hf
from sam_core.models.sam2.config import Sam2Config
from sam_core.models.sam2.model import Sam2
from sam_core.registry import (
    OFFICIAL_CHECKPOINTS,
    family_named,
    family_of_checkpoint,
    lookup_model,
    model_type_name,
    resolve_config,
)

__all__ = [
    "OFFICIAL_CHECKPOINTS", "CheckpointError", "LoadedCheckpoint", "OfficialCheckpoint",
    "download_official_checkpoint", "hf_to_meta_state_dict", "infer_config", "load_checkpoint", "load_sam", "load_sam2",
    "model_type_name", "sam_config_from_hf", "save_meta_checkpoint", "save_sam",
]

FORMAT_KEY = "sam_core.format"
FORMAT_VERSION = "1"
CONFIG_KEY = "sam_core.config"
FAMILY_KEY = "sam_core.family"  # absent in files written before there were several families: "sam"
CHECKSUM_KEY = "sam_core.crc32"  # absent in files written before sam_core stored it: not checked
_LISTED = 10  # how many names of each kind an error message shows
_REGISTRY_ALIASES = {"default": "vit_h"}
_CHECKPOINT_SUFFIXES = {".pth", ".pt", ".bin", ".safetensors", ".ckpt"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# --------------------------------------------------------------------------------------------------- public API

def load_sam(source: str | os.PathLike | Mapping[str, torch.Tensor], config: Any = None,
             device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> PromptableSegmenter:
    """Build a model of any family from a checkpoint; the family is recognised from the tensor names.

    Args:
        source (str, PathLike or Mapping[str, torch.Tensor]): Where the weights are: a Meta ``.pth`` (SAM,
            MobileSAM, SAM-HQ, EfficientViT-SAM) or ``.pt`` (SAM 2 / 2.1, ``{"model": state_dict}``) file, a
            sam_core ``.safetensors`` file (``save_sam``), a Hugging Face ``save_pretrained`` folder or hub
            id (``"facebook/sam-vit-base"``), a registry name (``"vit_b"``, ``"sam2.1_hiera_tiny"``...:
            the official file, downloaded once into the cache and sha256-checked), or a state dict in
            memory in any of these namings. See docs/checkpoints.md.
        config (str, config object or None): Forces the model's shapes: a registry name or a family's config
            (``SamConfig``, ``Sam2Config``...). None (default): the config stored with the checkpoint
            (sam_core metadata, Hugging Face ``config.json``), else the one inferred from the tensor shapes.
        device (str, torch.device or None): Where the model goes; None (default): the CPU.
        dtype (torch.dtype or None): The model's floating dtype; None (default): the checkpoint's own
            floating dtype if all its floating tensors share one, else float32.

    Returns:
        (PromptableSegmenter): The model (``Sam``, ``Sam2``, ...) with the checkpoint's weights, in eval
            mode, on ``device`` in ``dtype``. Tensors of the file that the model does not use (SAM 2's
            video-only modules, TinyViT's classifier head) are left out; ``load_checkpoint`` returns them.

    Raises:
        CheckpointError: If the source is not found or cannot be downloaded, is unreadable, truncated or
            damaged (CRC-32), holds pickled code, is not a state dict of a known model family, has a stored
            config of another format version or family, was asked for a config of another family, or does
            not fit the model (the message lists every missing, unexpected and mis-shaped tensor).
    """
    return load_checkpoint(source, config, device, dtype).model


@dataclass
class LoadedCheckpoint:
    """A model built from a checkpoint, and the tensors of the file that it does not use."""

    model: PromptableSegmenter
    extras: StateDict = field(default_factory=dict)
    """Tensors the family's files hold beside the model's (SAM 2: the video-only modules), Meta's names."""


def load_checkpoint(source: str | os.PathLike | Mapping[str, torch.Tensor], config: Any = None,
                    device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> LoadedCheckpoint:
    """:func:`load_sam`, also returning the checkpoint's tensors that the model leaves out (``extras``).

    Args:
        source (str, PathLike or Mapping[str, torch.Tensor]): as for :func:`load_sam`.
        config (str, config object or None): as for :func:`load_sam`.
        device (str, torch.device or None): as for :func:`load_sam`.
        dtype (torch.dtype or None): as for :func:`load_sam`.

    Returns:
        (LoadedCheckpoint): ``model``, as :func:`load_sam` returns it, and ``extras``: a dict of the file's
            tensors that the model does not use, with Meta's names, on the CPU in the file's dtype (SAM 2 / 2.1:
            the video-only modules; MobileSAM and SAM-HQ tiny: TinyViT's classifier head; otherwise empty).

    Raises:
        CheckpointError: as :func:`load_sam` does.
    """
    state_dict, stored_config, origin, family = _read_source(source)
    extras: StateDict = {}
    if family.split_extras is not None:
        state_dict, extras = family.split_extras(state_dict)
    if config is not None:
        try:
            wanted_family, wanted = resolve_config(config)
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{origin}: {error}") from None
        if wanted_family is not family:
            raise CheckpointError(f"{origin} holds a {family.name} model, but a {wanted_family.name} config "
                                  f"({config if isinstance(config, str) else wanted.summary()}) was requested")
        wanted_name = config if isinstance(config, str) else None
    elif stored_config is not None:
        wanted, wanted_name = stored_config, None
    else:
        # The whole file's tensors: the video-only ones tell SAM 2.1 from SAM 2.0.
        wanted, wanted_name = family.infer_config({**state_dict, **extras}, origin), None
    check_fits(state_dict, family, wanted, wanted_name, origin)
    model = family.build(wanted)
    model.load_state_dict(state_dict, strict=True)
    return LoadedCheckpoint(model.to(device=device, dtype=dtype or common_float_dtype(state_dict)), extras)


def save_sam(model: PromptableSegmenter, path: str | os.PathLike,
             state_dict: Mapping[str, torch.Tensor] | None = None) -> Path:
    """Write a model's weights to a safetensors file with its family, config and a CRC-32 of the content in the
    metadata, atomically (temporary file + rename); :func:`load_sam` reads it back. See docs/checkpoints.md.

    Args:
        model (PromptableSegmenter): The model to save (any family, any device and dtype; tensors are written
            in their dtype, from the CPU).
        path (str or PathLike): The file to write, conventionally ``*.safetensors`` (replaced if it exists).
        state_dict (Mapping[str, torch.Tensor] or None): Tensors to write instead of the model's own (same
            names and shapes), e.g. weights with training adapters merged in (``sam_core.finetune.lora``) while
            the model keeps training. None (default): ``model.state_dict()``.

    Returns:
        (Path): ``path``.

    Raises:
        ValueError: If ``model.family`` is not a registered family.
        OSError: If the file cannot be written (nothing is left behind at ``path``).
    """
    path = Path(path)
    family = family_named(model.family)
    source = model.state_dict() if state_dict is None else state_dict
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in source.items()}
    config = model.config or family.infer_config(tensors, "the model")  # a hand-assembled model may have none
    metadata = {"format": "pt", FORMAT_KEY: FORMAT_VERSION, FAMILY_KEY: family.name,
                CONFIG_KEY: json.dumps(config.to_dict())}
    metadata[CHECKSUM_KEY] = content_checksum(tensors, metadata)
    write_atomically(path, lambda temp_path: save_file(tensors, str(temp_path), metadata=metadata))
    return path


def save_meta_checkpoint(model: PromptableSegmenter, path: str | os.PathLike) -> Path:
    """Write a model in its family's Meta file layout (SAM: the plain state dict of a ``.pth``, which
    ``segment_anything``'s ``sam_model_registry`` loads), atomically. Raises ``CheckpointError`` for a
    family whose Meta files hold more than sam_core's model (SAM 2's hold the video model too)."""
    family = family_named(model.family)
    if family.to_meta_file is None:
        raise CheckpointError(f"{family.name} models cannot be written in Meta's layout: Meta's files of this "
                              "family hold tensors that sam_core's model does not have; use .safetensors")
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    write_atomically(Path(path), lambda temp_path: torch.save(family.to_meta_file(tensors), temp_path))
    return Path(path)


def content_checksum(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> str:
    """CRC-32 of what a sam_core safetensors file holds: its metadata (but this checksum) and every tensor's name,
    dtype, shape and bytes, in name order.

    ``save_sam`` stores it and ``load_sam`` checks it, so that a damaged file (a flipped bit, a byte changed in a
    copy) fails to load instead of loading other weights or another config: safetensors itself checks only that
    the header is well-formed and the sizes add up. CRC-32 detects every error of up to 32 consecutive bits and
    almost all others; it guards against accidents, not deliberate tampering (official downloads are checked
    against their sha256).
    """
    crc = zlib.crc32(json.dumps({k: v for k, v in sorted(metadata.items()) if k != CHECKSUM_KEY}).encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        crc = zlib.crc32(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode(), crc)
        crc = zlib.crc32(tensor.reshape(-1).view(torch.uint8).numpy(), crc)
    return f"{crc:08x}"


def infer_config(state_dict: Mapping[str, torch.Tensor], origin: str = "state dict") -> Any:
    """The config whose shapes produce ``state_dict`` (the family's own names), for any family."""
    return family_of_checkpoint(list(state_dict), origin).infer_config(state_dict, origin)


def download_official_checkpoint(model_type: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Path to Meta's official checkpoint for ``model_type``, downloading it into the cache first if needed.

    The cache is ``cache_dir``, else ``$SAM_CORE_CACHE``, else ``~/.cache/sam_core``; the download base
    URL is ``$SAM_CORE_WEIGHTS_URL`` (a mirror) or Meta's. A download goes to a temporary file that is
    renamed into place only after its sha256 matched; a cached file is trusted when its size matches.
    ``SAM_CORE_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` forbid downloading.

    Files whose sha256 is not known from a verifiable source (SAM 2's, see weights/README.md) are never
    downloaded: the error says where to put the file by hand, and a file found there is used as it is.
    """
    entry = OFFICIAL_CHECKPOINTS.get(_REGISTRY_ALIASES.get(model_type, model_type))
    if entry is None:
        raise CheckpointError(f"{model_type!r} has no official checkpoint (official: {sorted(OFFICIAL_CHECKPOINTS)});"
                              " use sam_core.build_sam for random weights")
    directory = Path(cache_dir or os.environ.get("SAM_CORE_CACHE") or "~/.cache/sam_core").expanduser()
    target = directory / entry.filename
    url = (os.environ.get("SAM_CORE_WEIGHTS_URL") or entry.base_url).rstrip("/") + "/" + entry.filename
    if target.is_file() and (entry.size is None or target.stat().st_size == entry.size):
        return target
    if entry.sha256 is None:
        raise CheckpointError(
            f"{model_type}: {entry.filename} is not in the cache, and sam_core does not download it because its "
            f"sha256 is not known to sam_core (nothing could check the download). Download {url} yourself, "
            f"check it, and put it at {target} (or set SAM_CORE_CACHE), or pass the file's path to load_sam")
    how_to_fix = (f"download {url} (sha256 {entry.sha256}, {entry.size} bytes) and put it at {target}, "
                  "or pass the file's path to load_sam")
    if _env_flag("SAM_CORE_OFFLINE") or _env_flag("HF_HUB_OFFLINE"):
        found = f" (the file there has {target.stat().st_size} bytes)" if target.exists() else ""
        raise CheckpointError(f"{model_type}: offline and {entry.filename} is not in the cache{found}; "
                              f"{how_to_fix}")
    directory.mkdir(parents=True, exist_ok=True)

    def download(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            digest = _stream_to(url, handle, entry)
        if digest != entry.sha256:
            raise CheckpointError(f"{model_type}: sha256 mismatch for {url}: got {digest}, expected "
                                  f"{entry.sha256}; the download was deleted")

    try:
        write_atomically(target, download, suffix=".part")
    except (urllib.error.URLError, OSError) as error:
        raise CheckpointError(f"{model_type}: could not download {url} ({error}); {how_to_fix}") from None
    return target


# ------------------------------------------------------------------------------------------- source reading

Read = tuple[StateDict, Any, str, ModelFamily]
"""(state dict with the family's own names, config stored alongside it or None, origin for messages, family)"""


def _read_source(source: str | os.PathLike | Mapping[str, torch.Tensor]) -> Read:
    if isinstance(source, Mapping):
        state_dict, family = _native_names(source, "state dict")
        return state_dict, None, "state dict", family
    path = Path(source).expanduser()
    text = os.fspath(source)
    if path.is_dir():
        return _read_hf_directory(path)
    if path.is_file():
        return _read_file(path)
    if text in OFFICIAL_CHECKPOINTS or _is_model_name(text):
        return _read_file(download_official_checkpoint(text))
    if _HUB_ID.match(text) and path.suffix not in _CHECKPOINT_SUFFIXES:
        return _read_hub(text)
    raise CheckpointError(
        f"checkpoint not found: {text} (expected an existing .pth/.pt/.safetensors/.bin file, a Hugging Face "
        f"checkpoint directory, a hub id like 'facebook/sam-vit-base', or one of {sorted(OFFICIAL_CHECKPOINTS)})")


def _is_model_name(text: str) -> bool:
    try:
        lookup_model(text)
    except ValueError:
        return False
    return True


def _read_file(path: Path) -> Read:
    origin = str(path)
    if path.suffix == ".safetensors" or _looks_like_safetensors(path):
        tensors, metadata = _load_safetensors(path)
        state_dict, family = _native_names(tensors, origin)
        stored = _stored_config(metadata, family, origin) if FORMAT_KEY in metadata else None
        return state_dict, stored, origin, family
    state_dict, family = _native_names(_load_torch(path), origin)
    return state_dict, None, origin, family


def _read_hf_directory(directory: Path) -> Read:
    for weights_name in ("model.safetensors", "pytorch_model.bin"):
        if (directory / weights_name).is_file():
            return _read_hf_files(directory / "config.json", directory / weights_name)
    raise CheckpointError(f"{directory} is not a Hugging Face checkpoint directory: "
                          "it has neither model.safetensors nor pytorch_model.bin")


def _read_hf_files(config_path: Path, weights_path: Path) -> Read:
    origin = str(weights_path)
    if weights_path.suffix == ".safetensors":
        tensors, _ = _load_safetensors(weights_path)
    else:
        tensors = _load_torch(weights_path)
    state_dict, family = _native_names(tensors, origin)
    config = None
    if config_path.is_file() and family.config_from_hf is not None:
        try:
            hf_config = json.loads(config_path.read_text())
        except (OSError, ValueError) as error:
            raise CheckpointError(f"{config_path}: not a readable JSON config ({error})") from None
        config = family.config_from_hf(hf_config, str(config_path))
    return state_dict, config, origin, family


def _read_hub(repo_id: str) -> Read:
    """Fetch config.json and the weights of a hub repo through huggingface_hub's cache (offline-aware)."""
    def not_available(reason: str) -> CheckpointError:
        return CheckpointError(
            f"{repo_id}: {reason}. Fetch config.json and model.safetensors from https://huggingface.co/{repo_id} "
            f"where there is network (e.g. `hf download {repo_id} config.json model.safetensors`) and either "
            f"keep them in the Hugging Face cache ({constants.HF_HUB_CACHE}) or put both in one folder and "
            "pass that folder to load_sam")

    offline = constants.is_offline_mode()
    reason = ("offline (HF_HUB_OFFLINE=1) and not in the Hugging Face cache" if offline
              else "not in the Hugging Face cache and the hub could not be reached")
    try:
        config_path = Path(hf_hub_download(repo_id, "config.json"))
        for weights_name in ("model.safetensors", "pytorch_model.bin"):
            try:
                return _read_hf_files(config_path, Path(hf_hub_download(repo_id, weights_name)))
            except EntryNotFoundError:
                continue  # not in the repo (online) or not cached (offline): try the other format
    except LocalEntryNotFoundError:
        raise not_available(reason) from None
    except HfHubHTTPError as error:
        raise CheckpointError(f"{repo_id}: no local file or folder of that name, and the Hugging Face hub "
                              f"refused the download ({error})") from None
    raise not_available(reason if offline else "the repo has neither model.safetensors nor pytorch_model.bin")


def _load_torch(path: Path) -> Mapping[str, object]:
    """torch.load restricted to tensors and plain containers: pickled code is refused, never run."""
    _check_zip_crcs(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # The safe unpickler names every callable or class it blocks as "GLOBAL module.name".
        if blocked := re.search(r"GLOBAL ([\w.]+)", str(error)):
            raise CheckpointError(
                f"{path}: refused to load; its pickle references {blocked.group(1)}, which is not a tensor and "
                "could run code. sam_core only loads plain state dicts with torch.load(weights_only=True)"
            ) from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (a state dict of tensors was expected)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        reason = str(error).split("\n")[0].split(". ")[0] or "the file ends early"
        raise CheckpointError(f"{path}: unreadable or truncated PyTorch checkpoint ({reason}); a state dict of "
                              "tensors was expected") from None
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{path}: holds a {type(loaded).__name__}, not a state dict of tensors")
    if isinstance(loaded.get("model"), Mapping):
        return loaded["model"]  # Meta's SAM 2 files: {"model": state_dict}
    if isinstance(loaded.get("state_dict"), Mapping):
        return loaded["state_dict"]  # some EfficientViT-SAM files: {"state_dict": state_dict}
    return loaded


def _check_zip_crcs(path: Path) -> None:
    """Check the CRC-32 that a ``torch.save`` archive stores for each entry, which torch.load does not: a damaged
    ``.pth`` then fails instead of loading other weights. Costs ~0.1 s per 250 MB; legacy (non-zip) pickles carry
    no checksum and are not checked."""
    if not zipfile.is_zipfile(path):
        return  # a legacy pickle, or an archive too damaged to be one: torch.load reports it
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except Exception as error:  # noqa: BLE001 (zipfile raises many types for a damaged archive)
        raise CheckpointError(f"{path}: damaged PyTorch checkpoint archive ({error})") from None
    if damaged is not None:
        raise CheckpointError(f"{path}: damaged file: its entry {damaged} fails its CRC-32 check (a changed byte); "
                              "download or copy it again")


def _load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            tensors, metadata = {name: handle.get_tensor(name) for name in handle.keys()}, handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: unreadable or truncated safetensors file (SAM weights were expected): "
                              f"{error}") from None
    stored = metadata.get(CHECKSUM_KEY)
    if stored is not None and stored != content_checksum(tensors, metadata):
        raise CheckpointError(f"{path}: damaged file: its content does not match the CRC-32 that save_sam stored "
                              "in it (a changed byte in the weights or metadata); copy or convert it again")
    return tensors, metadata


def _looks_like_safetensors(path: Path) -> bool:
    """A safetensors file starts with an 8-byte header length followed by a JSON object."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _stored_config(metadata: Mapping[str, str], family: ModelFamily, origin: str) -> Any:
    if metadata[FORMAT_KEY] != FORMAT_VERSION:
        raise CheckpointError(f"{origin}: sam_core format {metadata[FORMAT_KEY]!r} is not supported "
                              f"(this version reads {FORMAT_VERSION!r})")
    stored_family = metadata.get(FAMILY_KEY, "sam")
    if stored_family != family.name:
        raise CheckpointError(f"{origin}: the metadata says {stored_family!r} but the tensors are a {family.name} "
                              "model's")
    try:
        return family.config_type.from_dict(json.loads(metadata[CONFIG_KEY]))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{origin}: the config stored in the metadata is invalid ({error})") from None


def _native_names(tensors: Mapping[str, object], origin: str) -> tuple[StateDict, ModelFamily]:
    """Check that ``tensors`` is a state dict of a known family; return it with that family's own names."""
    not_tensors = [name for name, value in tensors.items() if not isinstance(value, torch.Tensor)]
    if not tensors or not_tensors:
        raise CheckpointError(f"{origin}: not a SAM state dict (expected names mapped to tensors; "
                              f"non-tensor entries: {_listing(not_tensors)})")
    family = family_of_checkpoint(list(tensors), origin)
    return family.to_native_names(dict(tensors)), family  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- validation

def check_fits(state_dict: StateDict, family: ModelFamily, config: Any, config_name: str | None,
                origin: str) -> None:
    """Raise one CheckpointError listing every missing, unexpected and mis-shaped tensor."""
    with torch.device("meta"):  # shapes only: nothing is allocated or initialised
        expected = {name: tensor.shape for name, tensor in family.build(config).state_dict().items()}
    missing = [name for name in expected if name not in state_dict]
    unexpected = [name for name in state_dict if name not in expected]
    mismatched = [f"{name} {tuple(state_dict[name].shape)} vs {tuple(shape)}"
                  for name, shape in expected.items() if name in state_dict and state_dict[name].shape != shape]
    if not (missing or unexpected or mismatched):
        return
    try:
        detected = family.model_type_name(family.infer_config(state_dict, origin))
    except CheckpointError:
        detected = "unrecognised"
    requested = config_name or family.model_type_name(config)
    raise CheckpointError(
        f"{origin} does not fit the requested model {requested}: the checkpoint holds a {detected} model\n"
        f"  missing keys ({len(missing)}): {_listing(missing)}\n"
        f"  unexpected keys ({len(unexpected)}): {_listing(unexpected)}\n"
        f"  shape mismatches, checkpoint vs model ({len(mismatched)}): {_listing(mismatched)}")


# ------------------------------------------------------------------------------------------------- helpers

def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_LISTED]) or "none"
    return shown + (f", ... ({len(items) - _LISTED} more)" if len(items) > _LISTED else "")


def common_float_dtype(state_dict: StateDict) -> torch.dtype:
    dtypes = {tensor.dtype for tensor in state_dict.values() if tensor.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else torch.float32


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _stream_to(url: str, handle: BinaryIO, entry: OfficialCheckpoint) -> str:
    """Copy ``url`` into the open file ``handle`` with a progress bar; return the sha256 of the bytes."""
    digest = hashlib.sha256()
    progress = tqdm(total=entry.size, unit="B", unit_scale=True, desc=entry.filename, disable=None)
    with urllib.request.urlopen(url, timeout=60) as response, progress:
        while chunk := response.read(1 << 20):
            handle.write(chunk)
            digest.update(chunk)
            progress.update(len(chunk))
    return digest.hexdigest()


def load_sam2(source: str | os.PathLike | Mapping[str, torch.Tensor], config: str | Sam2Config | None = None,
              device: str | torch.device | None = None, dtype: torch.dtype | None = None,
              ) -> tuple[Sam2, StateDict]:
    """(Sam2 with the checkpoint's image weights, the video-only tensors with Meta's names) from anything
    ``sam_core.load_sam`` reads: a Meta ``.pt`` file, a Hugging Face folder or hub id, a sam_core safetensors
    file, a state dict.

    ``config`` (registry name or Sam2Config) defaults to the stored config (config.json, sam_core metadata),
    else to the model recognised from the shapes; a Hiera of another size needs its Sam2Config, since the
    shapes do not tell its heads, windows or global blocks.
    """
    loaded = load_checkpoint(source, config, device, dtype)
    if not isinstance(loaded.model, Sam2):
        raise CheckpointError(f"{source if not isinstance(source, Mapping) else 'state dict'} holds a "
                              f"{loaded.model.family} model, not a SAM 2 model")
    return loaded.model, loaded.extras
