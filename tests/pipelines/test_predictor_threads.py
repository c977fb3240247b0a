"""Predictor from several threads: what the class docstring promises.

- Predictors in different threads may share one model: each gets its own image's results.
- One Predictor shared by threads: calls take turns, so a ``predict`` racing a ``set_image`` returns the
  complete result for one of the two images (never an error, and never one image's masks at the other's size).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest
from make_shapes_model import DEFAULT_OUTPUT as SHAPES_WEIGHTS
from make_shapes_model import draw_shapes_image

from sam_core import Predictor, load_sam

POINT = dict(point_coords=np.array([[20.0, 15.0]]), point_labels=np.array([1]))


@pytest.fixture(scope="module")
def model():
    return load_sam(SHAPES_WEIGHTS)


@pytest.fixture(scope="module")
def scenes() -> list[np.ndarray]:
    return [draw_shapes_image(np.random.default_rng(seed), 40 + 12 * seed, 60 - 8 * seed, n_shapes=3)[0]
            for seed in range(4)]


def expected_results(model, scenes: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    results = []
    for scene in scenes:
        predictor = Predictor(model)
        predictor.set_image(scene)
        masks, scores, _ = predictor.predict(**POINT)
        results.append((masks, scores))
    return results


def assert_matches(result: tuple[np.ndarray, np.ndarray, np.ndarray], expected: tuple[np.ndarray, np.ndarray]):
    masks, scores, _ = result
    assert masks.shape == expected[0].shape
    np.testing.assert_allclose(scores, expected[1], atol=1e-5)
    assert (masks == expected[0]).mean() > 0.999


def run_threads(targets: list[Callable[[], None]]) -> None:
    """Start every target at once; re-raise the first failure of any of them."""
    failures: list[BaseException] = []
    start = threading.Barrier(len(targets))

    def guarded(target: Callable[[], None]) -> None:
        try:
            start.wait()
            target()
        except BaseException as error:  # noqa: BLE001 (handed to the main thread)
            failures.append(error)

    threads = [threading.Thread(target=guarded, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def test_predictors_in_threads_share_one_model(model, scenes):
    expected = expected_results(model, scenes)

    def work(index: int) -> Callable[[], None]:
        def run() -> None:
            predictor = Predictor(model)
            for _ in range(3):
                predictor.set_image(scenes[index])
                for _ in range(3):
                    assert_matches(predictor.predict(**POINT), expected[index])
        return run

    run_threads([work(index) for index in range(len(scenes))])


def test_shared_predictor_never_mixes_two_images(model, scenes):
    first, second = scenes[0], scenes[2]  # different sizes: a mix would show in the mask shape
    expected = expected_results(model, [first, second])
    by_shape = {masks.shape: (masks, scores) for masks, scores in expected}
    predictor = Predictor(model)
    predictor.set_image(first)
    done = threading.Event()

    def swap_images() -> None:
        for index in range(8):
            predictor.set_image(second if index % 2 == 0 else first)
        done.set()

    def keep_predicting() -> None:
        while not done.is_set():
            result = predictor.predict(**POINT)
            assert_matches(result, by_shape[result[0].shape])

    run_threads([swap_images, keep_predicting, keep_predicting])
