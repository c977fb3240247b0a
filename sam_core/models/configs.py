"""What the config dataclasses of every family share: serialisation (``to_dict`` / ``from_dict``, the form
checkpoints and embedding files store), lookup by registry name, the prompt encoder's and mask decoder's fields
of the families built on SAM's decoder, and reading a config back from a checkpoint's tensor shapes."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch

from sam_core.errors import CheckpointError

Config = TypeVar("Config")

# Read from shapes is impossible (the heads split one projection); every official model uses 8.
ASSUMED_DECODER_HEADS = 8


class SerializableConfig:
    """Mixin for a frozen config dataclass: ``to_dict`` gives plain JSON values (tuples as lists, nested configs
    as dicts) and ``from_dict`` reads them back, refusing unknown fields."""

    nested_configs: ClassVar[Mapping[str, type[SerializableConfig]]] = {}
    """Fields that hold a config of their own (MobileSAM's ``encoder``), stored as its ``to_dict``."""

    def to_dict(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, SerializableConfig):
                return value.to_dict()
            return list(value) if isinstance(value, tuple) else value

        return {field.name: plain(getattr(self, field.name)) for field in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[Config], values: Mapping[str, Any]) -> Config:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {unknown}")
        nested = {name: config_type.from_dict(values[name]) for name, config_type in cls.nested_configs.items()
                  if name in values}
        return cls(**{**values, **nested})


def config_named(name_or_config: Any, configs: Mapping[str, Config], config_type: type[Config],
                 model_kind: str) -> Config:
    """A family's builder argument as a config.

    Args:
        name_or_config: a config of ``config_type``, or a registry name.
        configs: the family's registry, name -> config.
        config_type: the family's config class.
        model_kind: how the error message calls the family's models ("SAM 2 model").

    Returns:
        ``name_or_config`` itself if it is a config, else the registry entry of that name.

    Raises:
        ValueError: for a name the registry does not have.
    """
    if isinstance(name_or_config, config_type):
        return name_or_config
    try:
        return configs[name_or_config]
    except KeyError:
        raise ValueError(f"unknown {model_kind} {name_or_config!r}; known: {sorted(configs)}") from None


@dataclass(frozen=True, kw_only=True)
class DecoderFields(SerializableConfig):
    """The prompt encoder's and mask decoder's fields of every family built on SAM's decoder (SAM, MobileSAM,
    SAM-HQ's bases, EfficientViT-SAM, SAM 2). Keyword-only, so that a subclass's own fields keep their
    positions. Subclasses provide ``embedding_size`` (side of the image embedding grid)."""

    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_num_heads: int = 8
    decoder_mlp_dim: int = 2048
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256

    @property
    def low_res_mask_size(self) -> int:
        """Side of the decoder's low-resolution masks (256 for the official models)."""
        return 4 * self.embedding_size  # type: ignore[attr-defined]

    def decoder_width_problems(self, width: int, name: str) -> list[str]:
        """What is wrong with ``width``, the token width of the decoder (its ``name`` for the message)."""
        if width % self.decoder_num_heads or width % 8:
            return [f"{name} {width} must be divisible by 8 and by decoder_num_heads {self.decoder_num_heads}"]
        return []


@dataclass(frozen=True, kw_only=True)
class EncoderDecoderConfig(DecoderFields):
    """The decoder fields of a model whose encoder config (the subclass's ``encoder`` field: ``image_size``,
    ``out_chans``, ``summary()``) sets the input size and the token width, with an embedding at stride 16
    (MobileSAM's TinyViT, EdgeSAM's RepViT)."""

    def __post_init__(self) -> None:
        problems = self.decoder_width_problems(self.prompt_embed_dim, "the embedding width")
        if problems:
            raise ValueError(f"invalid {type(self).__name__}: " + "; ".join(problems))

    @property
    def image_size(self) -> int:
        """Side of the square model input: the encoder's."""
        return self.encoder.image_size  # type: ignore[attr-defined]

    @property
    def prompt_embed_dim(self) -> int:
        """Width of the prompt and image tokens: the encoder's output channels."""
        return self.encoder.out_chans  # type: ignore[attr-defined]

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding grid (the encoder's stride is 16)."""
        return self.encoder.image_size // 16  # type: ignore[attr-defined]

    def summary(self) -> str:
        return self.encoder.summary()  # type: ignore[attr-defined]


ShapeReader = Callable[[str], torch.Size]
Counter = Callable[[str], int]


def shape_readers(state_dict: Mapping[str, torch.Tensor], origin: str, checkpoint_kind: str = "a SAM",
                  prefix: str = "") -> tuple[ShapeReader, Counter]:
    """The two questions a config inference asks of a state dict.

    Args:
        state_dict: the tensors.
        origin: where they come from, for error messages.
        checkpoint_kind: what the error message says the file is not ("a SAM", "a TinyViT"...).
        prefix: prepended to every name asked about (``"image_encoder."`` for an encoder inside a model).

    Returns:
        ``shape(name)``: a tensor's shape (``CheckpointError`` naming it when missing); ``count(prefix)``: the
        number of numbered modules under ``prefix`` (``prefix.0.``, ``prefix.1.``...).
    """
    def shape(name: str) -> torch.Size:
        if prefix + name not in state_dict:
            raise CheckpointError(f"{origin} is not {checkpoint_kind} checkpoint: tensor {prefix + name!r} is missing")
        return state_dict[prefix + name].shape

    def count(modules: str) -> int:
        pattern = re.compile(re.escape(prefix + modules) + r"(\d+)\.")
        return len({m.group(1) for name in state_dict if (m := pattern.match(name))})

    return shape, count


def decoder_fields(shape: ShapeReader, count: Counter) -> dict[str, int]:
    """The :class:`DecoderFields` read from a checkpoint's shapes (Meta's names). ``shape(name)`` is a tensor's
    shape, ``count(prefix)`` the number of numbered modules under ``prefix`` (see :func:`shape_readers`); the
    decoder's heads are ``ASSUMED_DECODER_HEADS``."""
    return dict(
        mask_in_chans=shape("prompt_encoder.mask_downscaling.3.weight")[0],
        decoder_depth=count("mask_decoder.transformer.layers."),
        decoder_num_heads=ASSUMED_DECODER_HEADS,
        decoder_mlp_dim=shape("mask_decoder.transformer.layers.0.mlp.lin1.weight")[0],
        num_multimask_outputs=shape("mask_decoder.mask_tokens.weight")[0] - 1,
        iou_head_depth=count("mask_decoder.iou_prediction_head.layers."),
        iou_head_hidden_dim=shape("mask_decoder.iou_prediction_head.layers.0.weight")[0],
    )


def infer_decoder_fields(state_dict: Mapping[str, torch.Tensor], origin: str) -> dict[str, int]:
    """:func:`decoder_fields` of a state dict under Meta's names."""
    return decoder_fields(*shape_readers(state_dict, origin))
