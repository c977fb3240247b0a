"""Pixel counts and boxes of thresholded upscaled mask logits, computed without upscaling most pixels.

The automatic mask generator needs, for every candidate mask, how many pixels of its upscaled logits lie
above a few thresholds (the stability score) and the box of the pixels above the mask threshold. Upscaling
is a linear map applied to each axis, ``logits = rows @ low_res @ cols.T`` (``ImageTransform.upscale_matrices``),
and each output pixel is a weighted mean of at most ``band x band`` neighbouring low-res logits. So:

- The output is cut into *cells*: the output rows that read the same window of low-res rows, crossed with
  the output columns that read the same window of low-res columns (about 7 x 7 pixels for a 1800x1200
  photo). Every pixel of a cell lies between the minimum and the maximum of its low-res window.
- A cell whose window lies wholly above a threshold (or wholly at or below it) is decided as a whole, by
  more than the rounding error of torch's float32 upscaling (``RELATIVE_ERROR`` times the window's largest
  magnitude). Only the cells a threshold crosses are evaluated pixel by pixel, in float64, from the exact
  weights.
- A pixel whose float64 value lies within that rounding error of a threshold could fall on either side in
  torch's float32 arithmetic; the mask is then marked *unresolved*, and the caller computes it the plain
  way (upscaling with torch). Every other count and box is therefore exactly what thresholding torch's
  upscaled logits gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Bound on |torch's float32 upscaled logit - the exact value| relative to the largest magnitude among the
# low-res logits it is computed from: two bilinear steps of at most four roundings each on weights summing
# to 1 give 8 * 2**-24 (4.8e-7); doubled for margin.
RELATIVE_ERROR = 1e-6
# Uncertain cells evaluated at once (bounds the float64 blocks to a few tens of MB).
_CELLS_PER_STEP = 1 << 14


@dataclass(frozen=True)
class AxisCells:
    """One axis of the upscaling, cut into cells of output indices that read the same low-res window."""

    starts: np.ndarray  # (cells,) first output index of each cell
    sizes: np.ndarray  # (cells,) output indices in each cell
    windows: np.ndarray  # (cells,) first low-res index of each cell's window
    weights: torch.Tensor  # (cells, max size, band) float64 weights on the window, zero past ``sizes``
    band: int
    reads: int  # low-res indices 0 .. reads - 1 have a nonzero weight somewhere; the rest are never read

    @classmethod
    def from_matrix(cls, matrix: np.ndarray) -> AxisCells:
        """Cells of an (outputs, inputs) interpolation matrix whose rows have contiguous supports."""
        nonzero = matrix != 0
        first = nonzero.argmax(axis=1)
        last = matrix.shape[1] - 1 - nonzero[:, ::-1].argmax(axis=1)
        band = int((last - first).max()) + 1
        change = np.flatnonzero(np.diff(first)) + 1
        starts = np.concatenate([[0], change])
        sizes = np.diff(np.append(starts, len(first)))
        windows = first[starts]
        weights = np.zeros((len(starts), int(sizes.max()), band))
        padded = np.pad(matrix, ((0, 0), (0, band)))
        for cell, (start, size, window) in enumerate(zip(starts, sizes, windows)):
            weights[cell, :size] = padded[start:start + size, window:window + band]
        return cls(starts, sizes, windows, torch.from_numpy(weights), band, int(last.max()) + 1)

    @property
    def ends(self) -> np.ndarray:
        return self.starts + self.sizes


@dataclass
class CellBounds:
    """Per-cell bounds of N masks (``UpscaledThresholds.bounds``): every upscaled logit of cell (n, a, b)
    that torch computes lies in [low - error, high + error]."""

    low: torch.Tensor  # (N, cells_r, cells_c)
    high: torch.Tensor
    error: torch.Tensor
    padded: torch.Tensor  # (N, side + band_r - 1, side + band_c - 1) the float32 low-res logits, zero-padded
    band: tuple[int, int]

    def __len__(self) -> int:
        return len(self.low)

    def take(self, index: torch.Tensor) -> CellBounds:
        """The masks at ``index``."""
        return CellBounds(self.low[index], self.high[index], self.error[index], self.padded[index], self.band)

    def windows(self, n: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """The (band_r, band_c) windows of logits starting at (rows, cols) of masks n, in float64."""
        view = self.padded.unfold(1, self.band[0], 1).unfold(2, self.band[1], 1)
        return view[n, rows, cols].double()

    def above(self, tau: float) -> torch.Tensor:
        """Cells whose every pixel is above ``tau``."""
        return self.low - self.error > tau

    def crossed(self, tau: float) -> torch.Tensor:
        """Cells with pixels that may lie on either side of ``tau``."""
        return (self.low - self.error <= tau) & (self.high + self.error > tau)


class UpscaledThresholds:
    """Counts and boxes of ``upscaled logits > threshold`` for one upscaling geometry.

    Args:
        rows, cols: the upscaling's matrices, (H, side) and (W, side) (``ImageTransform.upscale_matrices``).

    Thresholds compare as torch compares a float32 tensor with a Python float: in float32. Results for masks
    reported unresolved are meaningless; compute those masks the plain way.
    """

    def __init__(self, rows: np.ndarray, cols: np.ndarray) -> None:
        self.rows = AxisCells.from_matrix(rows)
        self.cols = AxisCells.from_matrix(cols)
        self.size = (rows.shape[0], cols.shape[0])
        self.side = rows.shape[1]
        self._cell_areas = torch.from_numpy(np.outer(self.rows.sizes, self.cols.sizes))
        self._valid_rows = torch.arange(self.rows.weights.shape[1]) < torch.from_numpy(self.rows.sizes)[:, None]
        self._valid_cols = torch.arange(self.cols.weights.shape[1]) < torch.from_numpy(self.cols.sizes)[:, None]
        self._row_windows = torch.from_numpy(self.rows.windows)
        self._col_windows = torch.from_numpy(self.cols.windows)

    @property
    def low_res_extent(self) -> tuple[int, int]:
        """Leading low-res rows and columns that the upscaling reads."""
        return self.rows.reads, self.cols.reads

    def bounds(self, low_res: torch.Tensor) -> CellBounds:
        """Cell bounds of low-res logits (N, side, side), for ``count_above`` and ``box_above``."""
        low_res = low_res.detach().float().cpu()
        band = (self.rows.band, self.cols.band)
        pad = (0, band[1] - 1, 0, band[0] - 1)
        rows, cols = self._row_windows, self._col_windows
        high = F.max_pool2d(F.pad(low_res[:, None], pad, value=-torch.inf), band, stride=1)[:, 0]
        low = -F.max_pool2d(F.pad(-low_res[:, None], pad, value=-torch.inf), band, stride=1)[:, 0]
        low, high = low[:, rows][:, :, cols], high[:, rows][:, :, cols]
        error = RELATIVE_ERROR * torch.maximum(low.abs(), high.abs())
        return CellBounds(low, high, error, F.pad(low_res, pad), band)

    def count_above(self, bounds: CellBounds, thresholds: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixels above each threshold (N, T) int64, and which masks are resolved (N,) bool."""
        counts = torch.empty((len(bounds), len(thresholds)), dtype=torch.int64)
        resolved = torch.ones(len(bounds), dtype=torch.bool)
        for k, tau in enumerate(_float32(thresholds)):
            counts[:, k] = (bounds.above(tau) * self._cell_areas).sum((1, 2))
            mask_index, row_cell, col_cell = bounds.crossed(tau).nonzero(as_tuple=True)
            for start in range(0, len(mask_index), _CELLS_PER_STEP):
                part = slice(start, start + _CELLS_PER_STEP)
                n, a, b = mask_index[part], row_cell[part], col_cell[part]
                pixels_above, undecided = self._pixels(bounds, n, a, b, tau)
                counts[:, k].index_add_(0, n, pixels_above.sum((1, 2)))
                resolved[n[undecided]] = False
        return counts, resolved

    def box_above(self, bounds: CellBounds, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Inclusive XYXY boxes (N, 4) int64 of the pixels above ``threshold`` ([0, 0, 0, 0] for none), and
        which masks are resolved (N,) bool.

        Each side of the box is found by scanning cell rows (columns) inwards from that side: the first
        one holding a cell wholly above the threshold bounds it, and only the crossed cells before it are
        evaluated, one row (column) of cells at a time.
        """
        tau = _float32([threshold])[0]
        above, crossed = bounds.above(tau), bounds.crossed(tau)
        resolved = torch.ones(len(bounds), dtype=torch.bool)
        sides = []
        for axis in (self.rows, self.cols):
            transpose = axis is self.cols
            grid_above = above.transpose(1, 2) if transpose else above
            grid_crossed = crossed.transpose(1, 2) if transpose else crossed
            for forward in (True, False):
                sides.append(self._scan(bounds, grid_above, grid_crossed, axis, transpose, forward, tau, resolved))
        top, bottom, left, right = sides
        boxes = torch.stack([left, top, right, bottom], dim=1)
        boxes[top < 0] = 0
        return boxes, resolved

    def _scan(self, bounds: CellBounds, above: torch.Tensor, crossed: torch.Tensor, axis: AxisCells, transpose: bool,
              forward: bool, tau: float, resolved: torch.Tensor) -> torch.Tensor:
        """First (``forward``) or last output index along ``axis`` holding a pixel above ``tau``, per mask;
        -1 where none. ``above``/``crossed`` are (N, cells along axis, cells across)."""
        count, cells = above.shape[:2]
        order = torch.arange(cells) if forward else torch.arange(cells - 1, -1, -1)
        starts = torch.from_numpy(axis.starts)
        ends = torch.from_numpy(axis.ends) - 1
        # Position (in scan order) of the first cell line holding a whole cell above: the scan stops there.
        certain = above.any(2)[:, order]
        stop = torch.where(certain.any(1), certain.int().argmax(1), cells)
        edge = torch.full((count,), -1, dtype=torch.int64)
        has_certain = stop < cells
        line = order[stop.clamp(max=cells - 1)]
        edge[has_certain] = (starts if forward else ends)[line][has_certain]
        candidates = crossed.any(2)[:, order] & (torch.arange(cells) < stop[:, None])
        position = torch.zeros(count, dtype=torch.int64)
        while True:
            # Next line, at or after ``position``, with crossed cells, for each mask still scanning.
            remaining = candidates & (torch.arange(cells) >= position[:, None])
            active = remaining.any(1)
            if not active.any():
                return edge
            masks = active.nonzero().squeeze(1)
            position[masks] = remaining[masks].int().argmax(1)
            lines = order[position[masks]]
            picked, across = crossed[masks, lines].nonzero(as_tuple=True)
            n, along = masks[picked], lines[picked]
            a, b = (across, along) if transpose else (along, across)
            pixels_above, undecided = self._pixels(bounds, n, a, b, tau)
            resolved[n[undecided]] = False
            occupied = pixels_above.any(1 if transpose else 2)  # (cells, pixels along the axis)
            hit = occupied.any(1)
            if hit.any():
                offsets = starts[along[hit]]
                size = occupied.shape[1]
                inner = occupied[hit].int().argmax(1) if forward else size - 1 - occupied[hit].flip(1).int().argmax(1)
                found = torch.full((count,), -1 if not forward else torch.iinfo(torch.int64).max, dtype=torch.int64)
                found.scatter_reduce_(0, n[hit], offsets + inner, "amin" if forward else "amax")
                done = torch.zeros(count, dtype=torch.bool)
                done[n[hit]] = True
                edge[done] = found[done]
                candidates[done] = False
            position[masks] += 1

    def _pixels(self, bounds: CellBounds, n: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                tau: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixels above ``tau`` of cells (n, a, b), (cells, rows, cols) bool with padding False, and which of
        the cells hold a pixel too close to ``tau`` to decide."""
        values = self.rows.weights[a] @ bounds.windows(n, self._row_windows[a], self._col_windows[b]) \
            @ self.cols.weights[b].transpose(1, 2)
        valid = self._valid_rows[a][:, :, None] & self._valid_cols[b][:, None, :]
        margin = bounds.error[n, a, b][:, None, None]
        above = (values - margin > tau) & valid
        undecided = (valid & (values - margin <= tau) & (values + margin > tau)).flatten(1).any(1)
        return above, undecided


def _float32(values: Sequence[float]) -> list[float]:
    return [float(np.float32(value)) for value in values]
