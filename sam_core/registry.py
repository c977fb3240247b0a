"""The registry of model families: every family sam_core can build and load, and the lookups that dispatch
on them (by registry name, by config, by checkpoint tensor names). A new family adds one entry to
``FAMILIES``; docs/architecture.md says what the entry and the model must provide."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sam_core.errors import CheckpointError
from sam_core.interface import ModelFamily, OfficialCheckpoint, PromptableSegmenter
from sam_core.models.edge_sam.family import EDGE_SAM_FAMILY
from sam_core.models.edgetam.family import EDGETAM_FAMILY
from sam_core.models.efficientvit.family import EFFICIENTVIT_SAM_FAMILY
from sam_core.models.mobile_sam.family import MOBILE_SAM_FAMILY
from sam_core.models.sam.family import SAM_FAMILY
from sam_core.models.sam2.family import SAM2_FAMILY
from sam_core.models.sam3.family import SAM3_FAMILY
from sam_core.models.sam_hq.family import SAM_HQ_FAMILY

FAMILIES: dict[str, ModelFamily] = {family.name: family for family in (
    SAM_FAMILY, SAM2_FAMILY, MOBILE_SAM_FAMILY, SAM_HQ_FAMILY, EFFICIENTVIT_SAM_FAMILY, EDGE_SAM_FAMILY,
    SAM3_FAMILY, EDGETAM_FAMILY)}

OFFICIAL_CHECKPOINTS: dict[str, OfficialCheckpoint] = {
    name: entry for family in FAMILIES.values() for name, entry in family.official_checkpoints.items()
}
"""Registry name -> released checkpoint, over all families (registry names are unique across families)."""


def model_names() -> list[str]:
    """Every registry name, over all families."""
    return sorted(name for family in FAMILIES.values() for name in family.configs)


def family_named(name: str) -> ModelFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {sorted(FAMILIES)}") from None


def lookup_model(name: str) -> tuple[ModelFamily, Any]:
    """(family, config) of a registry name such as ``vit_b``."""
    for family in FAMILIES.values():
        if name in family.configs:
            return family, family.configs[name]
    raise ValueError(f"unknown model type {name!r}; known: {model_names()}")


def family_of_config(config: Any) -> ModelFamily:
    # The family of the config's own class first: EdgeTamConfig is a Sam2Config too.
    for family in sorted(FAMILIES.values(), key=lambda family: type(config) is not family.config_type):
        if isinstance(config, family.config_type):
            return family
    raise TypeError(f"{type(config).__name__} is not the config of a known model family ({sorted(FAMILIES)})")


def resolve_config(name_or_config: Any) -> tuple[ModelFamily, Any]:
    """(family, config) of a registry name or a config object."""
    if isinstance(name_or_config, str):
        return lookup_model(name_or_config)
    return family_of_config(name_or_config), name_or_config


def family_of_checkpoint(names: Collection[str], origin: str) -> ModelFamily:
    """The family whose checkpoints have these tensor names (any naming the families read)."""
    owners = [family for family in FAMILIES.values() if family.owns_checkpoint(names)]
    # A family whose checkpoints are a special case of another's (SAM-HQ's of SAM's) takes them from it.
    owners = [family for family in owners if not any(family.name in other.specialises for other in owners)]
    if len(owners) == 1:
        return owners[0]
    shown = ", ".join(sorted(names)[:10]) or "none"
    if not owners:
        raise CheckpointError(f"{origin}: not a checkpoint of any known model family ({sorted(FAMILIES)}); "
                              f"its tensors are named {shown}{', ...' if len(names) > 10 else ''}")
    raise CheckpointError(f"{origin}: tensor names fit several model families ({[f.name for f in owners]})")


def build_model(name_or_config: Any = "vit_h") -> PromptableSegmenter:
    """A randomly initialised model of any family, from a registry name or a config (eval mode)."""
    family, config = resolve_config(name_or_config)
    return family.build(config)


def model_type_name(config: Any) -> str:
    """The registry name of ``config`` ("vit_b"...), else a short description of a custom model."""
    return family_of_config(config).model_type_name(config)
