"""Fine-tuning settings (``FinetuneConfig``): what trains, SAM's interactive recipe, the optimiser and its schedule,
and the presets ``cpu`` (a laptop budget) and ``paper`` (the SAM paper's schedule).

The presets in detail: docs/finetune.md."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

TRAINABLE = ("decoder", "prompt", "lora")
"""What ``FinetuneConfig.train`` may hold: the mask decoder, the prompt encoder, LoRA adapters on the image
encoder's attention."""


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of a fine-tuning run (the defaults are the ``cpu`` preset).

    One step is one AdamW update. It takes ``images_per_step`` training images, in a shuffled order that
    goes through all images before repeating one (a new order every epoch); on each image, up to
    ``objects_per_image`` of its objects drawn at random; and for each object ``1 + correction_points +
    mask_only_iterations`` decoder passes (``decoder_passes``). The loss is the mean over the passes and the
    objects of an image; the gradients of the step's images are averaged into one update.

    Args:
        steps: number of updates.
        images_per_step: images per update.
        objects_per_image: most objects of an image used in one step (all objects share its embedding).
        learning_rate: peak learning rate.
        weight_decay: AdamW weight decay (on every trained tensor).
        betas: AdamW betas.
        warmup_steps: steps of linear warm-up from ``learning_rate / warmup_steps`` to ``learning_rate``.
        decay_milestones: fractions of ``steps`` at which the learning rate is multiplied by ``decay_factor``.
        decay_factor: the multiplier.
        correction_points: passes that add one point drawn from the error region of the previous prediction.
        mask_only_iterations: passes that add no point, only the previous prediction as mask input: the
            last pass is one, the others fall at random among the correction passes (as in the paper).
        box_probability: chance that an object's first prompt is its box rather than a point in its mask.
        box_noise: standard deviation of the box noise, as a fraction of the box side.
        box_noise_cap: largest box-coordinate offset, as a fraction of the model input side (the paper's
            20 pixels at its 1024-pixel input).
        train: what trains, a subset of ``TRAINABLE``: ``"decoder"`` (the mask decoder; for SAM 2 without
            ``conv_s0`` / ``conv_s1``, which belong to the cached image encoding), ``"prompt"`` (the prompt
            encoder), ``"lora"`` (adapters on the image encoder's attention; the embedding cache is then not
            used, since the encoder changes every step, and each step runs it on its images).
        lora_rank: rank of the LoRA updates.
        lora_alpha: LoRA scale numerator (the update is scaled by ``lora_alpha / lora_rank``).
        eval_every: validate, save ``last`` (and ``best`` if it improved) and the training state every this
            many steps, and after the last one.
        seed: seeds the image order, the objects, the prompts and the LoRA initialisation.
    """

    steps: int = 300
    images_per_step: int = 2
    objects_per_image: int = 8
    learning_rate: float = 1e-4
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 10
    decay_milestones: tuple[float, ...] = (2 / 3, 0.963)
    decay_factor: float = 0.1
    correction_points: int = 3
    mask_only_iterations: int = 1
    box_probability: float = 0.5
    box_noise: float = 0.1
    box_noise_cap: float = 20 / 1024
    train: tuple[str, ...] = ("decoder",)
    lora_rank: int = 4
    lora_alpha: float = 4.0
    eval_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        positive = {"steps": self.steps, "images_per_step": self.images_per_step,
                    "objects_per_image": self.objects_per_image, "eval_every": self.eval_every,
                    "lora_rank": self.lora_rank}
        wrong = [f"{name}={value}" for name, value in positive.items() if value < 1]
        if self.learning_rate <= 0 or self.warmup_steps < 0 or self.correction_points < 0:
            wrong.append("learning_rate > 0, warmup_steps >= 0 and correction_points >= 0")
        if self.mask_only_iterations < 0 or not 0 <= self.box_probability <= 1:
            wrong.append("mask_only_iterations >= 0 and box_probability in [0, 1]")
        unknown = set(self.train) - set(TRAINABLE)
        if not self.train or unknown:
            wrong.append(f"train must be a non-empty subset of {TRAINABLE}, got {self.train}")
        if wrong:
            raise ValueError(f"invalid fine-tuning config: {', '.join(wrong)}")
        object.__setattr__(self, "train", tuple(sorted(set(self.train), key=TRAINABLE.index)))

    @property
    def decoder_passes(self) -> int:
        return 1 + self.correction_points + self.mask_only_iterations

    def learning_rate_at(self, step: int) -> float:
        """Learning rate of update ``step`` (0-based): linear warm-up, then step decay."""
        rate = self.learning_rate
        if self.warmup_steps:
            rate *= min(1.0, (step + 1) / self.warmup_steps)
        return rate * self.decay_factor ** sum(step >= fraction * self.steps for fraction in self.decay_milestones)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FinetuneConfig:
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in values.items()})

    def replace(self, **changes: Any) -> FinetuneConfig:
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, FinetuneConfig] = {
    "cpu": FinetuneConfig(),
    "paper": FinetuneConfig(steps=90_000, images_per_step=256, objects_per_image=64, learning_rate=8e-4,
                            weight_decay=0.1, betas=(0.9, 0.999), warmup_steps=250,
                            decay_milestones=(60_000 / 90_000, 86_666 / 90_000), decay_factor=0.1,
                            correction_points=8, mask_only_iterations=2, eval_every=1000),
}
