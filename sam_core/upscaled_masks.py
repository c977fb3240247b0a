"""Pixel counts and boxes of thresholded upscaled mask logits, computed without upscaling most pixels.

The automatic mask generator needs, for every candidate mask, how many pixels of its upscaled logits lie
above a few thresholds (the stability score) and the box of the pixels above the mask threshold. Upscaling
is a linear map applied to each axis, ``logits = rows @ low_res @ cols.T`` (``ImageTransform.upscale_matrices``,
whose entries are the float32 weights torch multiplies by), and each output pixel is a weighted mean of at
most ``band x band`` neighbouring low-res logits. So:

- The output is cut into *cells*: the output rows that read the same window of low-res rows, crossed with
  the output columns that read the same window of low-res columns (about 7 x 7 pixels for a 1800x1200
  photo with SAM). Every pixel of a cell lies between the minimum and the maximum of its low-res window.
- A cell whose window lies wholly above a threshold (or wholly at or below it), by more than the rounding
  error of torch's float32 upscaling, is decided as a whole. Only the cells a threshold crosses are
  evaluated pixel by pixel, in float64 (exact to ~1e-16), together with a bound on torch's rounding error
  at that pixel (``RELATIVE_ERROR`` times the same weighted sum of magnitudes).
- A pixel whose value lies within that bound of a threshold could fall on either side in torch's float32
  arithmetic; its mask is then reported *unresolved*, and the caller computes it the plain way (upscaling
  with torch). Every count and box reported resolved is therefore exactly what thresholding torch's
  upscaled logits gives. A box needs only the outermost rows and columns, scanned inwards from each side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

# Bound on |torch's float32 upscaled logit - the exact value| relative to the same weighted sum of the
# magnitudes of the low-res logits it is computed from: two bilinear steps of at most four roundings each
# (and a rounded weight sum where both taps of an axis fall on one input) give 9 * 2**-24 (5.4e-7); 1e-6
# leaves a margin. Cell bounds use it relative to the largest magnitude in the cell's window.
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
        # Cells are padded to the largest for batched evaluation: split the few long ones (at the edges,
        # where many outputs read the last window) into pieces of the median length.
        piece = max(1, int(np.median(sizes)))
        pieces = -(-sizes // piece)
        starts = np.repeat(starts, pieces) + piece * (np.arange(pieces.sum()) - np.repeat(np.cumsum(pieces) - pieces,
                                                                                          pieces))
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
    that torch computes is at least ``low[n, a, b]`` and at most ``high[n, a, b]`` (rounding included)."""

    low: torch.Tensor  # (N, cells_r, cells_c)
    high: torch.Tensor
    low_res: torch.Tensor  # (N, side, side) float32

    def __len__(self) -> int:
        return len(self.low)

    def take(self, index: torch.Tensor) -> CellBounds:
        """The masks at ``index``."""
        return CellBounds(self.low[index], self.high[index], self.low_res[index])

    def above(self, tau: float) -> torch.Tensor:
        """Cells whose every pixel is above ``tau``."""
        return self.low > tau

    def crossed(self, tau: float) -> torch.Tensor:
        """Cells with pixels that may lie on either side of ``tau`` (and cells with NaN bounds)."""
        return ~(self.low > tau) & ~(self.high <= tau)


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
        self._row_padding = _padding(self.rows)
        self._col_padding = _padding(self.cols)
        # Low-res indices of each cell's window; past the last row (column), the last one again: the weights
        # there are zero, and its value lies in the window anyway.
        self._row_taps = torch.from_numpy(np.minimum(self.rows.windows[:, None] + np.arange(self.rows.band),
                                                     self.side - 1))
        self._col_taps = torch.from_numpy(np.minimum(self.cols.windows[:, None] + np.arange(self.cols.band),
                                                     cols.shape[1] - 1))
        self._col_sizes = torch.from_numpy(self.cols.sizes).float()
        self._row_sizes = torch.from_numpy(self.rows.sizes).double()

    @property
    def low_res_extent(self) -> tuple[int, int]:
        """Leading low-res rows and columns that the upscaling reads."""
        return self.rows.reads, self.cols.reads

    def bounds(self, low_res: torch.Tensor) -> CellBounds:
        """Cell bounds of low-res logits (N, side, side), for ``count_above`` and ``box_above``."""
        low_res = low_res.detach().float().cpu()
        rows, cols = torch.from_numpy(self.rows.windows), torch.from_numpy(self.cols.windows)
        low = _sliding(torch.minimum, low_res, self.rows.band, 1).index_select(1, rows)
        high = _sliding(torch.maximum, low_res, self.rows.band, 1).index_select(1, rows)
        low = _sliding(torch.minimum, low, self.cols.band, 2).index_select(2, cols)
        high = _sliding(torch.maximum, high, self.cols.band, 2).index_select(2, cols)
        error = RELATIVE_ERROR * torch.maximum(low.abs(), high.abs())
        return CellBounds(low - error, high + error, low_res)

    def count_above(self, bounds: CellBounds, thresholds: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixels above each threshold (N, T) int64, and which masks are resolved (N,) bool."""
        counts = torch.empty((len(bounds), len(thresholds)), dtype=torch.int64)
        resolved = torch.ones(len(bounds), dtype=torch.bool)
        for k, tau in enumerate(_float32(thresholds)):
            # Integer sums: exact in float32 along a row of cells (at most W), in float64 over the rows.
            counts[:, k] = ((bounds.above(tau).float() @ self._col_sizes).double() @ self._row_sizes).long()
            mask_index, row_cell, col_cell = bounds.crossed(tau).nonzero(as_tuple=True)
            for start in range(0, len(mask_index), _CELLS_PER_STEP):
                part = slice(start, start + _CELLS_PER_STEP)
                n, a, b = mask_index[part], row_cell[part], col_cell[part]
                pixels_above, undecided = self._pixels(bounds, n, a, b, tau)
                counts[:, k].index_add_(0, n, pixels_above.sum((1, 2)))
                resolved[n[undecided.flatten(1).any(1)]] = False
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
            surely, undecided = self._pixels(bounds, n, a, b, tau)
            # The line decides the edge where its outermost pixel that may be above is surely above.
            reduce = 1 if transpose else 2  # (cells, pixels along the axis)
            edge_surely = self._outermost(surely.any(reduce), starts[along], forward)
            edge_maybe = self._outermost((surely | undecided).any(reduce), starts[along], forward)
            hit = edge_maybe >= 0
            if hit.any():
                reduction, start = ("amin", torch.iinfo(torch.int64).max) if forward else ("amax", -1)
                found = torch.full((count,), start, dtype=torch.int64)
                found.scatter_reduce_(0, n[hit], edge_maybe[hit], reduction)
                sure = torch.full((count,), start, dtype=torch.int64)
                has_sure = edge_surely >= 0
                sure.scatter_reduce_(0, n[has_sure], edge_surely[has_sure], reduction)
                done = torch.zeros(count, dtype=torch.bool)
                done[n[hit]] = True
                resolved[done & (sure != found)] = False
                edge[done] = found[done]
                candidates[done] = False
            position[masks] += 1

    @staticmethod
    def _outermost(occupied: torch.Tensor, offsets: torch.Tensor, forward: bool) -> torch.Tensor:
        """Per cell, the first (``forward``) or last occupied output index ((cells, pixels) with the cells' first
        indices ``offsets``); -1 for cells with none."""
        size = occupied.shape[1]
        inner = occupied.int().argmax(1) if forward else size - 1 - occupied.flip(1).int().argmax(1)
        return torch.where(occupied.any(1), offsets + inner, -1)

    def _pixels(self, bounds: CellBounds, n: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                tau: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixels of cells (n, a, b) surely above ``tau``, and pixels too close to ``tau`` to decide: two
        (cells, rows, cols) bool maps, False on the padding."""
        windows = bounds.low_res[n[:, None, None], self._row_taps[a][:, :, None], self._col_taps[b][:, None, :]]
        windows = windows.double()
        rows, cols = self.rows.weights[a], self.cols.weights[b].transpose(1, 2)
        distance = (rows @ windows @ cols).sub_(tau)
        # Padding pixels lie infinitely far below: neither above nor undecided.
        distance += self._row_padding[a][:, :, None]
        distance += self._col_padding[b][:, None, :]
        margin = (rows @ windows.abs_() @ cols).mul_(RELATIVE_ERROR)
        above = distance > margin
        undecided = ~(distance.abs_() > margin)  # NaN included
        return above, undecided


def _padding(axis: AxisCells) -> torch.Tensor:
    """(cells, max size) float64: 0 at each cell's output indices, -inf past them."""
    past = torch.arange(axis.weights.shape[1]) >= torch.from_numpy(axis.sizes)[:, None]
    return torch.zeros(past.shape, dtype=torch.float64).masked_fill_(past, -torch.inf)


def _sliding(reduce: Callable, values: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """``reduce`` (torch.minimum or torch.maximum) over windows [i, i + width) along ``dim``, cut short at the
    end; elementwise over shifted slices, which is much faster on CPU than pooling or gathering."""
    result = values.clone()
    length = values.shape[dim]
    for shift in range(1, min(width, length)):
        head = result.narrow(dim, 0, length - shift)
        reduce(head, values.narrow(dim, shift, length - shift), out=head)
    return result


def _float32(values: Sequence[float]) -> list[float]:
    return [float(np.float32(value)) for value in values]
