"""The console scripts, a module each: argument parsing and exit codes over ``sam_core.jobs`` and the library.
Nothing in sam_core imports this package.

``amg_main``, ``convert_main`` and ``export_onnx_main`` are the old entry points ``sam_core.cli:amg_main``, ...,
kept as re-exports.
"""

from sam_core.cli.amg import main as amg_main
from sam_core.cli.convert import main as convert_main
from sam_core.cli.export_onnx import main as export_onnx_main

__all__ = ["amg_main", "convert_main", "export_onnx_main"]
