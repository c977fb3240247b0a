"""``finetune``: adapt a model of any family to annotated images with SAM's interactive recipe. A run writes
``best.safetensors``, ``last.safetensors``, ``training_state.pt`` (what ``resume`` continues from), ``metrics.jsonl``
and ``curves.png`` into its output folder.

Design notes: docs/finetune.md."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm import tqdm

from sam_core.finetune.annotations import AnnotatedImage
from sam_core.finetune.cache import CachedPredictor, EmbeddingCache, encode_images, encoder_fingerprint
from sam_core.finetune.config import PRESETS, FinetuneConfig
from sam_core.finetune.evaluate import Evaluation, evaluate, format_comparison
from sam_core.finetune.lora import add_lora, merge_lora, merged_state_dict
from sam_core.finetune.parts import MASK_DECODER, PROMPT_ENCODER, named_parameters_of
from sam_core.finetune.recipe import image_loss
from sam_core.finetune.report import MetricsLog, plot_curves
from sam_core.interface import PromptableSegmenter
from sam_core.io.checkpoints import save_sam
from sam_core.io.files import write_atomically
from sam_core.pipelines.predictor import Predictor

STATE_FORMAT = "sam_core.finetune_state.v1"
BEST, LAST, STATE, METRICS, CURVES = ("best.safetensors", "last.safetensors", "training_state.pt", "metrics.jsonl",
                                      "curves.png")
_PARTS = {"decoder": MASK_DECODER, "prompt": PROMPT_ENCODER}
CURVES_EVERY_SECONDS = 60  # curves.png is redrawn at checkpoints this far apart, and at the end


@dataclass
class FinetuneResult:
    """What ``finetune`` returns.

    Args:
        model: the model passed in, now holding the best weights (adapters merged), in eval mode.
        output_dir: the run's folder; ``best_path`` and ``last_path`` are its checkpoints.
        best_step: the step whose weights are ``best`` (0: the model before training).
        best_score: their validation score (None without validation images: ``best`` is then ``last``).
        steps: steps completed.
        before, after: ``sam_core.evaluate`` of the validation images before training and with the best
            weights (None without validation images or with ``compare=False``); ``comparison`` is their table.
    """

    model: PromptableSegmenter
    output_dir: Path
    best_step: int
    best_score: float | None
    steps: int
    before: Evaluation | None = None
    after: Evaluation | None = None
    comparison: str | None = None

    @property
    def best_path(self) -> Path:
        return self.output_dir / BEST

    @property
    def last_path(self) -> Path:
        return self.output_dir / LAST


def default_cache_dir() -> Path:
    """``$SAM_CORE_CACHE/embeddings``, else ``~/.cache/sam_core/embeddings`` (beside downloaded weights)."""
    return Path(os.environ.get("SAM_CORE_CACHE") or "~/.cache/sam_core").expanduser() / "embeddings"


def validation_score(evaluation: Evaluation) -> float:
    """The score that picks ``best``: the mean of ``miou_1click`` (one click at each object's centre, the
    top-predicted of three masks) and ``miou_box`` (its tight box, one mask) of ``sam_core.evaluate``."""
    return (evaluation.summary["miou_1click"] + evaluation.summary["miou_box"]) / 2


def finetune(model: PromptableSegmenter, train_images: Sequence[AnnotatedImage],
             val_images: Sequence[AnnotatedImage] = (), output_dir: str | os.PathLike = "finetune",
             config: FinetuneConfig | str | None = None, *, resume: bool = False,
             cache_dir: str | os.PathLike | None = None, cache_dtype: torch.dtype | None = None,
             compare: bool = True, progress: bool = True,
             on_step: Callable[[int, dict[str, Any]], None] | None = None) -> FinetuneResult:
    """Fine-tune ``model`` in place on ``train_images``, choosing ``best`` on ``val_images``.

    One step is one optimiser update over ``config.images_per_step`` images, each with up to
    ``config.objects_per_image`` objects (see ``FinetuneConfig``).

    Args:
        model (PromptableSegmenter): A float32 model of any family that declares ``parameter_roles`` (SAM,
            SAM 2, ...). It may have served predictions already. It ends holding the best weights, in eval mode.
        train_images (sequence of AnnotatedImage): Annotated training images
            (``sam_core.finetune.read_training_data(...).images``); at least one.
        val_images (sequence of AnnotatedImage): Held-out images for ``best`` and the before/after comparison;
            may be empty (default).
        output_dir (str or PathLike): The run's folder (default ``"finetune"``, created if needed), where it
            writes ``best.safetensors``, ``last.safetensors``, ``training_state.pt``, ``metrics.jsonl`` and
            ``curves.png`` (see docs/finetune.md). It must not hold a training state unless ``resume``.
        config (FinetuneConfig, str or None): A ``FinetuneConfig``, a preset name (``"cpu"``, ``"paper"``), or
            None: the ``cpu`` preset, or when resuming the saved config. A config that differs from a resumed
            run's is an error.
        resume (bool): Continue the run saved in ``output_dir`` (from its last saved step; a fresh start if
            there is none). ``model`` must be the same base model as in the first run.
        cache_dir (str, PathLike or None): Embedding cache folder (default ``default_cache_dir()``); not used
            when ``config.train`` includes ``"lora"`` (the encoder then runs every step).
        cache_dtype (torch.dtype or None): Storage dtype of cached features (``torch.float16`` halves the
            files); None: the model's dtype.
        compare (bool): Evaluate the validation images with ``sam_core.evaluate`` before and after, and print
            the table (default True).
        progress (bool): Show progress bars (default True).
        on_step (callable or None): Called after every step with the step number (int, from 1) and its
            training record (dict: ``"loss"``, ``"mask_loss"``, ``"iou_loss"``, ``"lr"``, ``"objects"``...).

    Returns:
        (FinetuneResult): The model (now holding the best weights), the output folder and its checkpoint
            paths, the best step and its validation score, the steps completed, and the before / after
            evaluations with their comparison table.

    Raises:
        FileExistsError: If ``output_dir`` holds a training state and ``resume`` is False.
        ValueError: If there are no training images, the preset is unknown, the model is not float32 or its
            family declares no ``parameter_roles``, the config differs from the resumed run's, the resumed
            run was trained from another base model, or its state file is not a sam_core fine-tuning state.
    """
    output = Path(output_dir)
    state = _read_state(output / STATE) if resume and (output / STATE).is_file() else None
    if (output / STATE).is_file() and not resume:
        raise FileExistsError(f"{output} holds a fine-tuning run; pass resume=True (--resume) to continue it, "
                              "or choose another output folder")
    config = _resolved_config(config, state)
    _check_model(model)
    train_images, val_images = list(train_images), list(val_images)
    if not train_images:
        raise ValueError("no training images")
    fingerprint = encoder_fingerprint(model)
    if state is not None and state["encoder_fingerprint"] != fingerprint:
        raise ValueError(f"{output / STATE} was trained from another base model (its image encoder differs); "
                         "resume with the model the run started from")
    output.mkdir(parents=True, exist_ok=True)
    run = _Run(model, config, output, train_images, val_images, progress, fingerprint)
    if "lora" not in config.train:
        run.cache = EmbeddingCache(model, cache_dir or default_cache_dir(), storage_dtype=cache_dtype)
        run.train_keys = run.cache.build((image.load_image() for image in train_images), len(train_images),
                                         progress)
        run.cache.build((image.load_image() for image in val_images), len(val_images), progress)
    requires_grad = {name: parameter.requires_grad for name, parameter in model.named_parameters()}
    try:
        before = run.start(state, compare)
        run.train(on_step)
        return run.finish(requires_grad, before)
    finally:
        if _adapters(model):  # interrupted: leave a plain model behind
            merge_lora(model)
            _restore_requires_grad(model, requires_grad)


class _Run:
    """The state of one fine-tuning run while it trains."""

    def __init__(self, model: PromptableSegmenter, config: FinetuneConfig, output: Path,
                 train_images: list[AnnotatedImage], val_images: list[AnnotatedImage], progress: bool,
                 fingerprint: str) -> None:
        self.model, self.config, self.output = model, config, output
        self.train_images, self.val_images, self.progress = train_images, val_images, progress
        self.fingerprint = fingerprint
        self.cache: EmbeddingCache | None = None
        self.train_keys: list[str] = []
        self.step = 0
        self.best_step, self.best_score = 0, None
        self.before_summary: dict[str, Any] | None = None
        self.started = self.plotted = time.perf_counter()

    def start(self, state: dict[str, Any] | None, compare: bool) -> Evaluation | None:
        """Set up what trains and the optimiser, from scratch or from ``state``; validate the untrained model."""
        model, config = self.model, self.config
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        if "lora" in config.train:
            add_lora(model, config.lora_rank, config.lora_alpha, seed=config.seed)
        self.trainable = _trainable_parameters(model, config)
        for parameter in self.trainable.values():
            parameter.requires_grad_(True)
        self.optimizer = torch.optim.AdamW(list(self.trainable.values()), lr=config.learning_rate,
                                           betas=config.betas, weight_decay=config.weight_decay)
        if state is not None:
            with torch.no_grad():
                for name, parameter in self.trainable.items():
                    parameter.copy_(state["trainable"][name])
            self.optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"])
            self.step, self.best_step, self.best_score = state["step"], state["best_step"], state["best_score"]
            self.before_summary = json.loads(state["before"]) if state["before"] else None
        self.metrics = MetricsLog(self.output / METRICS, keep_until=self.step if state is not None else None)
        if state is None:
            before = self._evaluate(clicks=None) if compare and self.val_images else None
            self.before_summary = before.summary if before is not None else None
            self._checkpoint(before)
        return Evaluation(self.before_summary, []) if self.before_summary is not None else None

    def train(self, on_step: Callable[[int, dict[str, Any]], None] | None) -> None:
        config, model = self.config, self.model
        bar = tqdm(total=config.steps, initial=self.step, desc="sam-finetune", unit="step",
                   disable=not self.progress or None)
        model.train()
        try:
            while self.step < config.steps:
                record = self._update(self.step)
                self.step += 1
                self.metrics.append(record)
                bar.update()
                bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
                if self.step % config.eval_every == 0 or self.step == config.steps:
                    score = self._checkpoint()
                    if score is not None:
                        bar.set_postfix(loss=f"{record['loss']:.4f}", val_miou=f"{score:.4f}", refresh=False)
                if on_step is not None:
                    on_step(self.step, record)
        finally:
            bar.close()
            model.eval()

    def finish(self, requires_grad: dict[str, bool], before: Evaluation | None) -> FinetuneResult:
        model = self.model
        merge_lora(model)
        model.load_state_dict(load_file(str(self.output / BEST), device=str(model.device)))
        _restore_requires_grad(model, requires_grad)
        model.eval()
        self._plot()
        after = comparison = None
        if before is not None:
            after = self._evaluate(clicks=None)
            comparison = format_comparison(before, after)
            print(f"validation ({len(self.val_images)} images), before and after fine-tuning "
                  f"(after: best, step {self.best_step}):\n{comparison}")
        return FinetuneResult(model, self.output, self.best_step, self.best_score, self.step, before, after,
                              comparison)

    def _update(self, step: int) -> dict[str, Any]:
        """One optimiser update (see ``FinetuneConfig``) and its training record."""
        config, model = self.config, self.model
        rate = config.learning_rate_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = rate
        rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(1, step)))
        self.optimizer.zero_grad(set_to_none=True)
        loss = mask_loss = iou_loss = 0.0
        objects = 0
        for index in _images_of_step(config, step, len(self.train_images)):
            masks = [obj.mask for obj in self.train_images[index].load_objects() if obj.mask.any()]
            if not masks:
                continue
            chosen = rng.choice(len(masks), size=min(len(masks), config.objects_per_image), replace=False)
            if self.cache is not None:
                features = self.cache.load(self.train_keys[index]).features
            else:
                features = encode_images(model, [self.train_images[index].load_image()]).features
            terms = image_loss(model, features, [masks[i] for i in sorted(chosen)], config, rng)
            (terms.total / config.images_per_step).backward()
            loss += terms.total.item() / config.images_per_step
            mask_loss += terms.mask / config.images_per_step
            iou_loss += terms.iou / config.images_per_step
            objects += terms.objects
        self.optimizer.step()
        return {"kind": "train", "step": step + 1, "loss": loss, "mask_loss": mask_loss, "iou_loss": iou_loss,
                "lr": rate, "objects": objects, "seconds": round(time.perf_counter() - self.started, 3)}

    def _checkpoint(self, evaluation: Evaluation | None = None) -> float | None:
        """Validate (unless ``evaluation`` of the current weights is given); write ``last``, ``best`` if it
        improved (without validation: ``last`` again), the training state and the curves. Returns the
        validation score."""
        score = None
        weights = merged_state_dict(self.model)
        save_sam(self.model, self.output / LAST, state_dict=weights)
        if self.val_images:
            evaluation = evaluation or self._evaluate(clicks=(1,))
            score = validation_score(evaluation)
            summary = evaluation.summary
            self.metrics.append({"kind": "val", "step": self.step, "val_miou": score,
                                 "miou_1click": summary["miou_1click"], "miou_box": summary["miou_box"]})
        if score is None or self.best_score is None or score > self.best_score:
            save_sam(self.model, self.output / BEST, state_dict=weights)
            self.best_step, self.best_score = self.step, score
        self._write_state()
        if time.perf_counter() - self.plotted > CURVES_EVERY_SECONDS:
            self._plot()
        return score

    def _plot(self) -> None:
        plot_curves(self.metrics.records, self.output / CURVES)
        self.plotted = time.perf_counter()

    def _evaluate(self, clicks: Sequence[int] | None) -> Evaluation:
        predictor = Predictor(self.model) if self.cache is None else CachedPredictor(self.model, self.cache)
        options = {} if clicks is None else {"clicks": clicks}
        return evaluate(predictor, self.val_images, **options)

    def _write_state(self) -> None:
        state = {
            "format": STATE_FORMAT,
            "config": json.dumps(self.config.to_dict()),
            "encoder_fingerprint": self.fingerprint,
            "step": self.step,
            "best_step": self.best_step,
            "best_score": self.best_score,
            "before": json.dumps(self.before_summary) if self.before_summary is not None else "",
            "trainable": {name: parameter.detach().cpu() for name, parameter in self.trainable.items()},
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        write_atomically(self.output / STATE, lambda temporary: torch.save(state, temporary))


def saved_config(output_dir: str | os.PathLike) -> FinetuneConfig:
    """The config of the run saved in ``output_dir`` (for resuming it)."""
    return FinetuneConfig.from_dict(json.loads(_read_state(Path(output_dir) / STATE)["config"]))


def _resolved_config(config: FinetuneConfig | str | None, state: dict[str, Any] | None) -> FinetuneConfig:
    if isinstance(config, str):
        if config not in PRESETS:
            raise ValueError(f"unknown preset {config!r}; presets: {sorted(PRESETS)}")
        config = PRESETS[config]
    if state is None:
        return config or PRESETS["cpu"]
    saved = FinetuneConfig.from_dict(json.loads(state["config"]))
    if config is not None and config != saved:
        changed = [f"{key}: {value} -> {getattr(config, key)}" for key, value in saved.to_dict().items()
                   if getattr(config, key) != getattr(saved, key)]
        raise ValueError(f"the run to resume used another config ({'; '.join(changed)})")
    return saved


def _read_state(path: Path) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a sam_core fine-tuning state")
    return state


def _check_model(model: PromptableSegmenter) -> None:
    if model.dtype != torch.float32:
        raise ValueError(f"fine-tune a float32 model (this one is {model.dtype}): "
                         "sam_core.load_sam(..., dtype=torch.float32)")
    named_parameters_of(model, MASK_DECODER)  # raises for a family without parameter roles


def _trainable_parameters(model: PromptableSegmenter, config: FinetuneConfig) -> dict[str, torch.nn.Parameter]:
    trainable: dict[str, torch.nn.Parameter] = {}
    for part, role in _PARTS.items():
        if part in config.train:
            trainable.update(named_parameters_of(model, role))
    if "lora" in config.train:
        trainable.update({name: parameter for name, parameter in model.named_parameters()
                          if name.endswith((".lora_a", ".lora_b"))})
    return trainable


def _adapters(model: PromptableSegmenter) -> list[str]:
    return [name for name, _ in model.named_parameters() if name.endswith(".lora_a")]


def _restore_requires_grad(model: PromptableSegmenter, requires_grad: dict[str, bool]) -> None:
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(requires_grad.get(name, True))


def _images_of_step(config: FinetuneConfig, step: int, count: int) -> list[int]:
    """Indexes of the training images of ``step``: epoch after epoch, each a fresh permutation of all images."""
    orders: dict[int, np.ndarray] = {}
    indexes = []
    for position in range(step * config.images_per_step, (step + 1) * config.images_per_step):
        epoch, offset = divmod(position, count)
        if epoch not in orders:
            orders[epoch] = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(0, epoch))
                                                  ).permutation(count)
        indexes.append(int(orders[epoch][offset]))
    return indexes
