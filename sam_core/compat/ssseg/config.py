"""sssegmentation's model config dicts (``sam_cfg``, ``samv2_cfg``) read into sam_core's config dataclasses.

sssegmentation describes a model with nested dicts of constructor arguments (``backbone``, ``prompt``,
``head``...). Every key is checked here: a key sam_core's models do not know (often a key at the wrong
nesting level) or a value they cannot express (``qkv_bias=False``, another ``norm_cfg``...) raises one
``ValueError`` that names the key, instead of building a model that would differ from sssegmentation's.
Keys that only matter for training (dropout, drop path, gradient checkpointing, initialisation) are
accepted and ignored. Missing keys take the defaults of sssegmentation's module constructors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from sam_core.models.edge_sam.config import M1_SE_BLOCKS, EdgeSamConfig, RepViTConfig
from sam_core.models.mobile_sam.config import MobileSamConfig
from sam_core.models.sam.config import SamConfig
from sam_core.models.sam2.config import Sam2Config
from sam_core.models.sam_hq.config import SamHqConfig
from sam_core.models.tiny_vit.config import TinyViTConfig

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
_LAYER_NORM = {"type": "LayerNorm", "eps": 1e-6}
_TOP_LEVEL = {"backbone", "prompt", "head", "ckptpath", "pixel_mean", "pixel_std",
              # Read by sssegmentation's BaseSegmentor for other segmentors; its SAM models ignore them.
              "align_corners", "norm_cfg", "act_cfg"}


class _Section:
    """One dict of a config, read key by key, with every error naming the key's full path."""

    def __init__(self, values: Any, path: str, known: set[str], defaults: Mapping[str, Any] | None = None) -> None:
        if not isinstance(values, Mapping):
            raise ValueError(f"{path} must be a dict, got {type(values).__name__}")
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{path} has keys sam_core does not know: {unknown} (known: {sorted(known)}); "
                             "is a key at the wrong nesting level?")
        self.values = {**(defaults or {}), **values}
        self.path = path

    def get(self, key: str) -> Any:
        value = self.values.get(key)
        if value is None:
            raise ValueError(f"{self.path}[{key!r}] is not set (sssegmentation leaves it None in its default "
                             "config: pass a complete config or one of the use_default_* flags)")
        return value

    def expect(self, key: str, expected: Any) -> None:
        """sam_core's models hard-wire ``expected``: anything else is refused."""
        if key in self.values and not _same(self.values[key], expected):
            raise ValueError(f"{self.path}[{key!r}] = {self.values[key]!r} cannot be expressed by sam_core's "
                             f"models, which use {expected!r}")

    def section(self, key: str, known: set[str], defaults: Mapping[str, Any] | None = None) -> _Section:
        return _Section(self.values.get(key, {}), f"{self.path}[{key!r}]", known, defaults)


def _same(value: Any, expected: Any) -> bool:
    if isinstance(expected, Mapping):
        return isinstance(value, Mapping) and set(value) == set(expected) and all(
            _same(value[k], expected[k]) for k in expected)
    if isinstance(expected, Sequence) and not isinstance(expected, str):
        return (isinstance(value, Sequence) and not isinstance(value, str) and len(value) == len(expected)
                and all(_same(v, e) for v, e in zip(value, expected)))
    return value == expected


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


def _top_level(cfg: Any, name: str, extra: frozenset[str] = frozenset()) -> _Section:
    top = _Section(cfg, name, _TOP_LEVEL | extra)
    top.expect("pixel_mean", list(SAM_PIXEL_MEAN))
    top.expect("pixel_std", list(SAM_PIXEL_STD))
    return top


# ------------------------------------------------------------------------------------------------- SAM 1

_SAMVIT_KEYS = {"type", "img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads", "mlp_ratio",
                "out_chans", "qkv_bias", "norm_cfg", "act_cfg", "use_abs_pos", "use_rel_pos", "rel_pos_zero_init",
                "window_size", "global_attn_indexes", "selected_indices"}
# sssegmentation's SAMViT constructor defaults (its default config sets most of them explicitly).
_SAMVIT_DEFAULTS = {"img_size": 1024, "patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12,
                    "mlp_ratio": 4.0, "out_chans": 256, "use_rel_pos": False, "window_size": 0,
                    "global_attn_indexes": ()}
_TINYVIT_KEYS = {"type", "structure_type", "img_size", "in_chans", "embed_dims", "depths", "num_heads",
                 "window_sizes", "mlp_ratio", "drop_rate", "drop_path_rate", "use_checkpoint", "mbconv_expand_ratio",
                 "local_conv_size", "act_cfg", "pretrained", "pretrained_model_path", "selected_indices"}
_TINYVIT_DEFAULTS = {"img_size": 224, "embed_dims": (96, 192, 384, 768), "depths": (2, 2, 6, 2),
                     "num_heads": (3, 6, 12, 24), "window_sizes": (7, 7, 14, 7), "mlp_ratio": 4.0,
                     "mbconv_expand_ratio": 4.0, "local_conv_size": 3}
_PROMPT_KEYS = {"embed_dim", "image_embedding_size", "input_image_size", "mask_in_chans", "act_cfg"}
_HEAD_KEYS = {"num_multimask_outputs", "transformer_cfg", "transformer_dim", "iou_head_depth", "iou_head_hidden_dim",
              "act_cfg"}
_HEAD_DEFAULTS = {"num_multimask_outputs": 3, "iou_head_depth": 3, "iou_head_hidden_dim": 256}
_TRANSFORMER_KEYS = {"depth", "embedding_dim", "num_heads", "mlp_dim", "act_cfg", "attention_downsample_rate"}
TINY_VIT_OUT_CHANS = 256  # sssegmentation's MobileSAMTinyViT hard-wires its neck width
_REPVIT_KEYS = {"type", "structure_type", "arch", "img_size", "upsample_mode", "pretrained", "pretrained_model_path"}
_REPVIT_DEFAULTS = {"img_size": 1024, "upsample_mode": "bicubic"}
REP_VIT_OUT_CHANS = 256  # sssegmentation's EdgeSAMRepViT hard-wires its neck width
REP_VIT_ARCHS: dict[str, RepViTConfig] = {
    # The block tables sssegmentation's EdgeSAMRepViT names (``arch``), as stage widths and depths and the
    # blocks with squeeze-excite; the input size and the neck's interpolation come from the config.
    "m1": RepViTConfig(embed_dims=(48, 96, 192, 384), depths=(3, 4, 16, 3), se_blocks=M1_SE_BLOCKS),
    "m2": RepViTConfig(embed_dims=(64, 128, 256, 512), depths=(3, 4, 14, 3),
                       se_blocks=(0, 4, 8, 10, 12, 14, 16, 18, 22)),
    "m3": RepViTConfig(embed_dims=(64, 128, 256, 512), depths=(5, 6, 20, 3),
                       se_blocks=(0, 2, 6, 8, 12, 14, 16, 18, 20, 22, 24, 26, 28, 32)),
}
# sssegmentation's neck upsamples with align_corners=False, which torch allows for these modes only.
REP_VIT_UPSAMPLE_MODES = ("bicubic", "bilinear")
EDGE_SAM_TOP_LEVEL = frozenset({"stability_score_offset"})  # read by sssegmentation's EdgeSAM predictor and model
_BACKBONES = {"SAMViT": "SAM, SAM-HQ", "MobileSAMTinyViT": "MobileSAM, SAM-HQ tiny", "EdgeSAMRepViT": "EdgeSAM"}


def sam_config_from_ssseg(sam_cfg: Any, hq: bool = False, name: str = "sam_cfg", edge: bool = False,
                          ) -> SamConfig | MobileSamConfig | SamHqConfig | EdgeSamConfig:
    """The sam_core config of a ``sam_cfg`` dict of sssegmentation's SAM, MobileSAM, (``hq``) SAM-HQ or
    (``edge``) EdgeSAM.

    The backbone's ``type`` picks the encoder: ``"SAMViT"`` (SAM's ViT) or ``"MobileSAMTinyViT"``, and
    ``"EdgeSAMRepViT"`` for EdgeSAM, which also takes a top-level ``stability_score_offset`` (read by its
    predictor, not part of the config). An EdgeSAM has SAM's decoder with three multimask outputs (its
    output choices 1, 3 and 4 need them) and a 256-channel embedding.

    Raises:
        ValueError: naming the first key sam_core cannot build as sssegmentation would.
    """
    top = _top_level(sam_cfg, name, EDGE_SAM_TOP_LEVEL if edge else frozenset())
    backbone_type = top.section("backbone", {"type"} | _SAMVIT_KEYS | _TINYVIT_KEYS | _REPVIT_KEYS).values.get("type")
    expected = ("EdgeSAMRepViT",) if edge else ("SAMViT", "MobileSAMTinyViT")
    if backbone_type not in expected:
        raise ValueError(f"{name}['backbone']['type'] = {backbone_type!r}: this class builds "
                         + " or ".join(f"{kind!r} ({_BACKBONES[kind]})" for kind in expected) + " encoders"
                         + ("" if backbone_type not in _BACKBONES else
                            f"; {backbone_type!r} is {_BACKBONES[backbone_type]}'s"))
    if edge:
        top.values.setdefault("stability_score_offset", 1.0)
        if isinstance(top.values["stability_score_offset"], bool) or \
                not isinstance(top.values["stability_score_offset"], (int, float)):
            raise ValueError(f"{name}['stability_score_offset'] must be a number, got "
                             f"{top.values['stability_score_offset']!r}")
    if backbone_type == "EdgeSAMRepViT":
        rep_vit = _rep_vit(top.section("backbone", _REPVIT_KEYS, _REPVIT_DEFAULTS))
        encoder, width, grid, image_size = {}, rep_vit.out_chans, rep_vit.image_size // 16, rep_vit.image_size
    elif backbone_type == "SAMViT":
        backbone = top.section("backbone", _SAMVIT_KEYS, _SAMVIT_DEFAULTS)
        encoder: dict[str, Any] = _vit_fields(backbone)
        width, grid, image_size = backbone.get("out_chans"), encoder["image_size"] // encoder["patch_size"], \
            encoder["image_size"]
    elif backbone_type == "MobileSAMTinyViT":
        backbone = top.section("backbone", _TINYVIT_KEYS, _TINYVIT_DEFAULTS)
        tiny_vit = _tiny_vit(backbone)
        encoder, width, grid, image_size = {}, TINY_VIT_OUT_CHANS, tiny_vit.image_size // 16, tiny_vit.image_size
    prompt = top.section("prompt", _PROMPT_KEYS)
    prompt.expect("act_cfg", {"type": "GELU"})
    if prompt.get("embed_dim") != width:
        raise ValueError(f"{name}['prompt']['embed_dim'] = {prompt.get('embed_dim')} differs from the encoder's "
                         f"output width {width} (the backbone's out_chans): sam_core's models use one width")
    prompt.expect("image_embedding_size", [grid, grid])
    prompt.expect("input_image_size", [image_size, image_size])
    head = top.section("head", _HEAD_KEYS | ({"vit_dim"} if hq else set()), _HEAD_DEFAULTS)
    head.expect("act_cfg", {"type": "GELU"})
    if edge:
        head.expect("num_multimask_outputs", 3)
    head.expect("transformer_dim", width)
    transformer = head.section("transformer_cfg", _TRANSFORMER_KEYS)
    transformer.expect("embedding_dim", width)
    transformer.expect("act_cfg", {"type": "ReLU"})
    transformer.expect("attention_downsample_rate", 2)
    decoder = dict(mask_in_chans=prompt.get("mask_in_chans"), decoder_depth=transformer.get("depth"),
                   decoder_num_heads=transformer.get("num_heads"), decoder_mlp_dim=transformer.get("mlp_dim"),
                   num_multimask_outputs=head.get("num_multimask_outputs"), iou_head_depth=head.get("iou_head_depth"),
                   iou_head_hidden_dim=head.get("iou_head_hidden_dim"))
    if backbone_type == "EdgeSAMRepViT":
        return EdgeSamConfig(encoder=rep_vit, **decoder)
    base: SamConfig | MobileSamConfig
    if backbone_type == "SAMViT":
        base = SamConfig(**encoder, prompt_embed_dim=width, **decoder)
    else:
        base = MobileSamConfig(encoder=tiny_vit, **decoder)
    if not hq:
        return base
    config = SamHqConfig(base)
    head.expect("vit_dim", config.vit_dim)  # the early feature's width follows from the encoder
    return config


def _vit_fields(backbone: _Section) -> dict[str, Any]:
    if backbone.values.get("use_rel_pos") is False:  # also sssegmentation's SAMViT default, when the key is missing
        raise ValueError(f"{backbone.path}['use_rel_pos'] is False (sssegmentation's default when the key is "
                         "missing): sam_core's SAM encoder always has relative position tables; set it to True")
    for key, value in (("in_chans", 3), ("qkv_bias", True), ("norm_cfg", _LAYER_NORM), ("act_cfg", {"type": "GELU"}),
                       ("use_abs_pos", True), ("use_rel_pos", True)):
        backbone.expect(key, value)
    global_blocks = backbone.get("global_attn_indexes")
    return dict(image_size=backbone.get("img_size"), patch_size=backbone.get("patch_size"),
                encoder_embed_dim=backbone.get("embed_dim"), encoder_depth=backbone.get("depth"),
                encoder_num_heads=backbone.get("num_heads"), encoder_global_attn_indexes=tuple(global_blocks),
                window_size=backbone.get("window_size"), encoder_mlp_ratio=float(backbone.get("mlp_ratio")))


def _tiny_vit(backbone: _Section) -> TinyViTConfig:
    backbone.expect("in_chans", 3)
    backbone.expect("act_cfg", {"type": "GELU"})
    if backbone.values.get("pretrained"):
        raise ValueError(f"{backbone.path}['pretrained'] = True: sam_core does not load ImageNet TinyViT weights "
                         "into the encoder; give the model's weights with ckptpath")
    return TinyViTConfig(
        image_size=backbone.get("img_size"), embed_dims=tuple(backbone.get("embed_dims")),
        depths=tuple(backbone.get("depths")), num_heads=tuple(backbone.get("num_heads")),
        window_sizes=tuple(backbone.get("window_sizes")), mlp_ratio=float(backbone.get("mlp_ratio")),
        mbconv_expand_ratio=float(backbone.get("mbconv_expand_ratio")),
        local_conv_size=backbone.get("local_conv_size"), out_chans=TINY_VIT_OUT_CHANS)


def _rep_vit(backbone: _Section) -> RepViTConfig:
    arch = backbone.get("arch")
    if arch not in REP_VIT_ARCHS:
        raise ValueError(f"{backbone.path}['arch'] = {arch!r}: sssegmentation's EdgeSAMRepViT has the block tables "
                         f"{sorted(REP_VIT_ARCHS)}")
    if backbone.values.get("pretrained"):
        raise ValueError(f"{backbone.path}['pretrained'] = True: sam_core does not load ImageNet RepViT weights "
                         "into the encoder; give the model's weights with ckptpath")
    image_size = backbone.get("img_size")
    if not isinstance(image_size, int) or image_size <= 0 or image_size % 32:
        raise ValueError(f"{backbone.path}['img_size'] = {image_size!r}: RepViT needs a positive multiple of 32 "
                         "(its last stage has stride 32)")
    mode = backbone.get("upsample_mode")
    if mode not in REP_VIT_UPSAMPLE_MODES:
        raise ValueError(f"{backbone.path}['upsample_mode'] = {mode!r}: sssegmentation's neck interpolates with "
                         f"align_corners=False, which torch allows for {list(REP_VIT_UPSAMPLE_MODES)} only")
    return dataclasses.replace(REP_VIT_ARCHS[arch], image_size=image_size, upsample_mode=mode,
                               out_chans=REP_VIT_OUT_CHANS)


# ------------------------------------------------------------------------------------------------- SAM 2

_HIERA_KEYS = {"embed_dim", "num_heads", "drop_path_rate", "q_pool", "q_stride", "stages", "dim_mul", "head_mul",
               "window_pos_embed_bkg_spatial_size", "window_spec", "global_att_blocks", "return_interm_layers"}
# sssegmentation's Hiera constructor defaults (those of Meta's Hiera-B+).
_HIERA_DEFAULTS = {"embed_dim": 96, "num_heads": 1, "q_pool": 3, "stages": (2, 3, 16, 3),
                   "window_pos_embed_bkg_spatial_size": (14, 14), "window_spec": (8, 4, 14, 7),
                   "global_att_blocks": (12, 16, 20)}
_FPN_KEYS = {"position_encoding_cfg", "d_model", "backbone_channel_list", "kernel_size", "stride", "padding",
             "fpn_interp_model", "fuse_type", "fpn_top_down_levels"}
_SINE_KEYS = {"num_pos_feats", "normalize", "scale", "temperature", "type"}
_SAMV2_HEAD_FIELDS = {  # sssegmentation's head key -> Sam2Config field of the same meaning
    "num_maskmem": "num_maskmem", "image_size": "image_size", "sigmoid_scale_for_mem_enc": "sigmoid_scale_for_mem_enc",
    "sigmoid_bias_for_mem_enc": "sigmoid_bias_for_mem_enc",
    "use_mask_input_as_output_without_sam": "use_mask_input_as_output_without_sam",
    "max_cond_frames_in_attn": "max_cond_frames_in_attn", "directly_add_no_mem_embed": "directly_add_no_mem_embed",
    "use_high_res_features_in_sam": "use_high_res_features", "multimask_output_in_sam": "multimask_output_in_sam",
    "multimask_min_pt_num": "multimask_min_pt_num", "multimask_max_pt_num": "multimask_max_pt_num",
    "multimask_output_for_tracking": "multimask_output_for_tracking",
    "use_multimask_token_for_obj_ptr": "use_multimask_token_for_obj_ptr",
    "iou_prediction_use_sigmoid": "iou_prediction_use_sigmoid",
    "memory_temporal_stride_for_eval": "memory_temporal_stride_for_eval",
    "non_overlap_masks_for_mem_enc": "non_overlap_masks_for_mem_enc",
    "use_obj_ptrs_in_encoder": "use_obj_ptrs_in_encoder",
    "max_obj_ptrs_in_encoder": "max_obj_ptrs_in_encoder", "add_tpos_enc_to_obj_ptrs": "add_tpos_enc_to_obj_ptrs",
    "proj_tpos_enc_in_obj_ptrs": "proj_tpos_enc_in_obj_ptrs",
    "only_obj_ptrs_in_the_past_for_eval": "only_obj_ptrs_in_the_past_for_eval", "pred_obj_scores": "pred_obj_scores",
    "pred_obj_scores_mlp": "pred_obj_scores_mlp", "fixed_no_obj_ptr": "fixed_no_obj_ptr",
    "soft_no_obj_ptr": "soft_no_obj_ptr", "use_mlp_for_obj_ptr_proj": "use_mlp_for_obj_ptr_proj",
}
# Read by the video predictor rather than the model (see Samv2Settings); compile_image_encoder is a speed-up.
_SAMV2_PREDICTOR_KEYS = {"binarize_mask_from_pts_for_mem_enc", "add_all_frames_to_correct_as_cond",
                         "sam_mask_decoder_extra_args", "backbone_stride", "memory_attention_cfg", "memory_encoder_cfg",
                         "compile_image_encoder"}
_DYNAMIC_MULTIMASK = ("dynamic_multimask_via_stability", "dynamic_multimask_stability_delta",
                      "dynamic_multimask_stability_thresh")


@dataclasses.dataclass(frozen=True)
class Samv2Settings:
    """A ``samv2_cfg`` read: the model's config and the two head settings sam_core keeps in its video predictor."""

    config: Sam2Config
    binarize_mask_from_pts_for_mem_enc: bool
    add_all_frames_to_correct_as_cond: bool


def sam2_config_from_ssseg(samv2_cfg: Any, name: str = "samv2_cfg") -> Samv2Settings:
    """The sam_core settings of a ``samv2_cfg`` dict of sssegmentation's SAM 2 (a SAM 2.0 model: no spatial
    no-object embedding and unsigned pointer distances, as sssegmentation's SAMV2 module).

    Raises:
        ValueError: naming the first key sam_core cannot build as sssegmentation would.
    """
    top = _Section(samv2_cfg, name, {"backbone", "head", "ckptpath"})
    backbone = top.section("backbone", {"type", "scalp", "hiera_cfg", "fpn_cfg", "selected_indices"})
    backbone.expect("type", "HieraWithFPN")
    hiera = backbone.section("hiera_cfg", _HIERA_KEYS, _HIERA_DEFAULTS)
    for key, value in (("q_stride", [2, 2]), ("dim_mul", 2.0), ("head_mul", 2.0), ("return_interm_layers", True)):
        hiera.expect(key, value)
    fpn = backbone.section("fpn_cfg", _FPN_KEYS)
    for key, value in (("kernel_size", 1), ("stride", 1), ("padding", 0), ("fuse_type", "sum")):
        fpn.expect(key, value)
    d_model = fpn.get("d_model")
    _expect_sine(fpn.section("position_encoding_cfg", _SINE_KEYS), d_model)
    head = top.section("head", set(_SAMV2_HEAD_FIELDS) | _SAMV2_PREDICTOR_KEYS)
    head.expect("backbone_stride", 16)
    fields = {field: head.get(key) for key, field in _SAMV2_HEAD_FIELDS.items() if key in head.values}
    fields.update(_memory_fields(head, d_model))
    extra = head.values.get("sam_mask_decoder_extra_args") or {}
    unknown = sorted(set(extra) - set(_DYNAMIC_MULTIMASK))
    if unknown:
        raise ValueError(f"{name}['head']['sam_mask_decoder_extra_args'] has keys sam_core does not know: {unknown}")
    fields["dynamic_multimask_via_stability"] = bool(extra.get(_DYNAMIC_MULTIMASK[0], False))
    fields.update({key: extra[key] for key in _DYNAMIC_MULTIMASK[1:] if key in extra})
    top_down = fpn.values.get("fpn_top_down_levels")
    config = Sam2Config(
        embed_dim=hiera.get("embed_dim"), num_heads=hiera.get("num_heads"), stages=tuple(hiera.get("stages")),
        q_pool=hiera.get("q_pool"), window_spec=tuple(hiera.get("window_spec")),
        global_att_blocks=tuple(hiera.get("global_att_blocks")),
        window_pos_embed_bkg_spatial_size=_pair(hiera.get("window_pos_embed_bkg_spatial_size")),
        d_model=d_model, scalp=int(backbone.values.get("scalp", 0)),
        fpn_top_down_levels=tuple(range(len(hiera.get("stages"))) if top_down is None else top_down),
        fpn_interp_mode=fpn.values.get("fpn_interp_model", "bilinear"),
        no_obj_embed_spatial=False, use_signed_tpos_enc_to_obj_ptrs=False, **fields)
    fpn.expect("backbone_channel_list", list(config.backbone_channel_list))
    return Samv2Settings(config, bool(head.values.get("binarize_mask_from_pts_for_mem_enc", False)),
                         bool(head.values.get("add_all_frames_to_correct_as_cond", False)))


def _expect_sine(encoding: _Section, width: int) -> None:
    for key, value in (("type", "PositionEmbeddingSine"), ("num_pos_feats", width), ("normalize", True),
                       ("scale", None), ("temperature", 10000)):
        encoding.expect(key, value)


def _memory_fields(head: _Section, d_model: int) -> dict[str, Any]:
    attention = head.section("memory_attention_cfg", {"d_model", "pos_enc_at_input", "num_layers", "layer_cfg",
                                                       "batch_first"})
    attention.expect("d_model", d_model)
    attention.expect("pos_enc_at_input", True)
    attention.expect("batch_first", True)
    layer = attention.section("layer_cfg", {"act_cfg", "dim_feedforward", "dropout", "pos_enc_at_attn", "d_model",
                                            "pos_enc_at_cross_attn_keys", "pos_enc_at_cross_attn_queries",
                                            "self_attention_cfg", "cross_attention_cfg"})
    for key, value in (("act_cfg", {"type": "ReLU"}), ("pos_enc_at_attn", False), ("d_model", d_model),
                       ("pos_enc_at_cross_attn_keys", True), ("pos_enc_at_cross_attn_queries", False)):
        layer.expect(key, value)
    encoder = head.section("memory_encoder_cfg", {"out_dim", "position_encoding_cfg", "mask_downsampler_cfg",
                                                   "fuser_cfg", "in_dim"})
    mem_dim = encoder.get("out_dim")
    encoder.values.setdefault("in_dim", 256)  # sssegmentation's MemoryEncoder default
    encoder.expect("in_dim", d_model)
    _expect_sine(encoder.section("position_encoding_cfg", _SINE_KEYS), mem_dim)
    downsampler = encoder.section("mask_downsampler_cfg", {"embed_dim", "kernel_size", "stride", "padding",
                                                           "total_stride", "act_cfg"}, {"embed_dim": 256})
    for key, value in (("embed_dim", d_model), ("kernel_size", 3), ("stride", 2), ("padding", 1),
                       ("total_stride", 16), ("act_cfg", {"type": "GELU"})):
        downsampler.expect(key, value)
    fuser = encoder.section("fuser_cfg", {"num_layers", "layer_cfg", "dim", "input_projection"})
    fuser.expect("num_layers", 2)
    fuser.expect("input_projection", False)
    fuser_layer = fuser.section("layer_cfg", {"dim", "kernel_size", "padding", "drop_path", "layer_scale_init_value",
                                              "use_dwconv"})
    for key, value in (("dim", d_model), ("kernel_size", 7), ("padding", 3), ("use_dwconv", True)):
        fuser_layer.expect(key, value)
    heads = set()
    theta = 10000.0
    for key, kv_dim in (("self_attention_cfg", None), ("cross_attention_cfg", mem_dim)):
        rope = layer.section(key, {"type", "rope_theta", "feat_sizes", "rope_k_repeat", "embedding_dim", "num_heads",
                                   "downsample_rate", "dropout", "kv_in_dim"})
        rope.expect("type", "RoPEAttention")
        rope.expect("embedding_dim", d_model)
        rope.expect("downsample_rate", 1)
        rope.expect("rope_k_repeat", key == "cross_attention_cfg")
        rope.expect("kv_in_dim", kv_dim)
        heads.add(rope.get("num_heads"))
        theta = float(rope.values.get("rope_theta", theta))
    if len(heads) != 1:
        raise ValueError(f"{layer.path}: self- and cross-attention head counts differ ({sorted(heads)}); sam_core's "
                         "memory attention uses one")
    return dict(mem_dim=mem_dim, memory_attention_layers=attention.get("num_layers"),
                memory_attention_heads=heads.pop(), memory_attention_mlp_dim=layer.get("dim_feedforward"),
                rope_theta=theta)
