"""Which parameters of a model make up its image encoder, prompt encoder and mask decoder.

Read from the family's ``parameter_roles`` (``sam_core.interface``), so fine-tuning never branches on
the family. The image encoder is everything ``encode`` reads (for SAM 2 that includes the decoder's
``conv_s0`` / ``conv_s1``): it is frozen whenever embeddings are cached.
"""

from __future__ import annotations

from torch import nn

from sam_core.interface import PromptableSegmenter

IMAGE_ENCODER = "image_encoder"
PROMPT_ENCODER = "prompt_encoder"
MASK_DECODER = "mask_decoder"
ROLES = (IMAGE_ENCODER, PROMPT_ENCODER, MASK_DECODER)


def role_of(model: PromptableSegmenter, name: str) -> str | None:
    """The part a parameter or buffer name belongs to (None: none of them)."""
    roles = model.parameter_roles
    if not roles:
        raise ValueError(f"the {model.family} model family declares no parameter_roles, so it cannot be "
                         "fine-tuned (see sam_core/interface.py)")
    for role in ROLES:  # the image encoder first: its prefixes win over the others
        if any(name.startswith(prefix) for prefix in roles.get(role, ())):
            return role
    return None


def named_parameters_of(model: PromptableSegmenter, role: str) -> dict[str, nn.Parameter]:
    """The parameters of one part, by name."""
    return {name: parameter for name, parameter in model.named_parameters() if role_of(model, name) == role}

