"""The documentation's pictures: bar charts of the committed benchmark tables and an overlay of the shipped model.

    .venv/bin/python benchmarks/make_charts.py [--output docs/img]

The charts are drawn from the markdown tables as committed (``benchmarks/results.md``, ``benchmarks/speed_modes.md``),
so they show exactly the numbers docs/benchmarks.md quotes; rerun this script after updating a table. The overlay
is ``sam-amg``'s work on a scene of ``sam-samples`` with ``weights/sam_vit_tiny_shapes.safetensors`` and the
README's options, drawn with ``sam_core.viz``. Needs matplotlib (test or examples extra).
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPES_MODEL = ROOT / "weights" / "sam_vit_tiny_shapes.safetensors"
# The README's first command: the thresholds that suit the toy model.
README_OPTIONS = {"pred_iou_thresh": 0.7, "stability_score_thresh": 0.9, "min_mask_region_area": 100}


def read_tables(path: Path) -> list[tuple[str, list[dict[str, str]]]]:
    """Every markdown table of ``path`` as (the first of the nearest run of heading or comment lines above it,
    its rows as dicts)."""
    tables, title, lines = [], "", path.read_text().splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("#") and not lines[index - 1].startswith("#"):
            title = line.lstrip("# ").strip()
        if line.startswith("|") and index + 1 < len(lines) and lines[index + 1].startswith("|---"):
            header = [cell.strip() for cell in line.strip("|").split("|")]
            rows, index = [], index + 2
            while index < len(lines) and lines[index].startswith("|"):
                cells = [cell.strip() for cell in lines[index].strip("|").split("|")]
                rows.append(dict(zip(header, cells)))
                index += 1
            tables.append((title, rows))
            continue
        index += 1
    return tables


def ratio(cell: str) -> float:
    """``"1.56x"`` -> 1.56."""
    return float(cell.rstrip("x"))


def bar_chart(path: Path, title: str, groups: list[str], series: dict[str, list[float]], xlabel: str,
              reference_line: float | None = 1.0) -> None:
    """Horizontal grouped bars: one group per label in ``groups``, one bar per series, values written beside."""
    import matplotlib  # optional dependency (test / examples extra): only this script draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height = 0.8 / len(series)
    figure, axes = plt.subplots(figsize=(7.5, 0.45 * len(groups) * max(len(series), 1.6) + 1.2))
    for rank, (name, values) in enumerate(series.items()):
        positions = [group + rank * height for group in range(len(groups))]
        bars = axes.barh(positions, values, height=height, label=name)
        axes.bar_label(bars, labels=[f"{value:g}" if value == value else "" for value in values], padding=3,
                       fontsize=8)
    axes.set_yticks([group + height * (len(series) - 1) / 2 for group in range(len(groups))], groups)
    axes.invert_yaxis()
    if reference_line is not None:
        axes.axvline(reference_line, color="grey", linewidth=0.8, linestyle="--")
    axes.set_xlabel(xlabel)
    axes.set_title(title, fontsize=10)
    axes.margins(x=0.15)
    if len(series) > 1:
        axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, metadata={"Date": None})
    plt.close(figure)


def speedups(rows: list[dict[str, str]], tasks: list[str], implementations: list[str], task_column: str = "task",
             ) -> dict[str, list[float]]:
    """{implementation: [its "vs reference" for each task]} (NaN, no bar, where a row is missing)."""
    found = {(row[task_column], row["implementation"]): ratio(row["vs reference"]) for row in rows}
    return {name: [found.get((task, name), float("nan")) for task in tasks] for name in implementations}


def charts(output: Path) -> list[Path]:
    results = read_tables(ROOT / "benchmarks" / "results.md")
    modes = read_tables(ROOT / "benchmarks" / "speed_modes.md")
    written = []

    title, main = results[0]
    tasks = ["encoder", "predict", "amg32", "sam2_tiny_encoder", "sam2_tiny_predict", "sam2_small_encoder",
             "sam2_small_predict"]
    path = output / "bench_vit_b_sam2.svg"
    bar_chart(path, "vit_b and SAM 2.1 Hiera-T/S against Meta's code, 2 CPU threads (2026-11-23)", tasks,
              speedups(main, tasks, ["transformers", "sam_core"]), "speed-up over the reference (x)")
    written.append(path)

    rows = [row for table_title, table in results if "MobileSAM vit_t and SAM-HQ" in table_title for row in table]
    rows += [{**row, "task": f"efficientvit_{row['model'].removeprefix('efficientvit_sam_')}_{row['task']}"}
             for table_title, table in results if "EfficientViT-SAM" in table_title for row in table]
    tasks = [row["task"] for row in rows if row["implementation"] == "sam_core"]
    path = output / "bench_variants.svg"
    bar_chart(path, "MobileSAM, SAM-HQ ViT-B, EfficientViT-SAM vs their references (2026-11-24)", tasks,
              speedups(rows, tasks, ["transformers", "sam_core"]), "speed-up over the reference (x)")
    written.append(path)

    _, table = modes[0]
    path = output / "speed_modes.svg"
    bar_chart(path, "Opt-in speed modes: vit_b encoder, 2 threads", [row["mode"] for row in table],
              {"speed-up": [ratio(row["speed-up"]) for row in table]}, "speed-up over the exact encoder (x)")
    written.append(path)

    table = next(table for table_title, table in results if table_title.startswith("SAM 2 video peak memory"))
    frames = sorted({row["frames"] for row in table}, key=int)
    path = output / "video_memory.svg"
    bar_chart(path, "SAM 2 video: peak RSS against clip length (sam2_hiera_test)",
              [f"{name}" for name in ("reference", "sam_core")],
              {f"{count} frames": [float(next(row["peak RSS"].split()[0] for row in table
                                              if row["implementation"] == name and row["frames"] == count))
                                   for name in ("reference", "sam_core")] for count in frames},
              "peak RSS (MB)", reference_line=None)
    written.append(path)

    table = next(table for table_title, table in results if table_title.startswith("sam-amg engines"))
    path = output / "ray_engines.svg"
    bar_chart(path, "sam-amg on 2 cores: one process against Ray actors (2026-11-24)", [row["engine"] for row in table],
              {"images per minute": [float(row["images per minute"]) for row in table]}, "images per minute",
              reference_line=None)
    written.append(path)
    return written


def overlay(output: Path) -> Path:
    """The shipped toy model's masks on the square sample scene, as ``sam-amg --overlay`` draws them."""
    from sam_core import AutomaticMaskGenerator, load_sam, viz
    from sam_core.jobs.samples import shapes_scenes

    scene = next(scene for scene in shapes_scenes() if scene.name == "shapes_landscape")
    records = AutomaticMaskGenerator(load_sam(SHAPES_MODEL), **README_OPTIONS).generate(scene.image)
    records.sort(key=lambda record: record["area"], reverse=True)
    path = output / "overlay_shapes.png"
    viz.save_png(path, viz.draw_masks(scene.image, [record["segmentation"] for record in records]))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "img", help="folder (default: %(default)s)")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    for path in [*charts(args.output), overlay(args.output)]:
        print(path)


if __name__ == "__main__":
    main()
