"""Old path, kept as a re-export: now ``sam_core.io.onnx_export``."""

from sam_core.io.onnx_export import (  # noqa: F401
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_FAMILIES,
    ENCODER_INPUT,
    ENCODER_OUTPUT,
    HIGH_RES_INPUTS,
    LABEL_VALUES,
    OPSET,
    SAM2_DECODER_INPUTS,
    SAM2_DECODER_OUTPUTS,
    ExportedFiles,
    Sam2OnnxDecoder,
    Sam2OnnxEncoder,
    SamOnnxDecoder,
    SamOnnxEncoder,
    decoder_inputs,
    export_onnx,
)
