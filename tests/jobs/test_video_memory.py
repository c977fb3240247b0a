"""Peak memory of video tracking does not grow with the video: a 300-frame clip against its first 30 frames.

Each run is a fresh process of ``benchmarks/video_memory.py``'s worker (the tiny ``sam2_hiera_test`` model, random
weights with the object forced present, one object clicked on frame 0 and tracked to the end). Were the frames
kept, the 270 more frames would add 270 x 0.75 MB (3 x 256 x 256 float32 each) to the peak RSS, as in Meta's
predictor (+214 MB measured there by the benchmark); were tracked outputs kept, the inference state would grow
with every frame.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from video_common import make_checkpoint  # noqa: E402
from video_memory import CONFIG_NAME, clips, run_worker  # noqa: E402

HEIGHT, WIDTH = 96, 128
RSS_BOUND_MB = 25.0  # allocator and page noise; the frames alone would add about 200 MB


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict]:
    root = tmp_path_factory.mktemp("video_memory")
    checkpoint = make_checkpoint(CONFIG_NAME, root / f"{CONFIG_NAME}.pt")
    return {length: run_worker("sam_core", folder, checkpoint, HEIGHT, WIDTH)
            for length, folder in clips(root, [30, 300], HEIGHT, WIDTH).items()}


def test_peak_memory_of_300_frames_is_that_of_30(runs):
    short, long = runs[30], runs[300]
    assert (short["frames"], long["frames"]) == (30, 300)
    assert long["peak_rss_mb"] - short["peak_rss_mb"] <= RSS_BOUND_MB, (short, long)
    # Frames, features, memories and outputs held by the inference state: the same bound for both lengths.
    assert long["state_mb"] <= short["state_mb"] * 1.05, (short, long)
