"""Pixel counts and boxes of thresholded upscaled mask logits, computed without upscaling most pixels: each count
and box is exactly what thresholding torch's upscaled logits gives, or its mask is reported unresolved.

Design notes: docs/pipelines.md."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

# Bound on |torch's float32 upscaled logit - the exact value| relative to the same weighted sum of the
# magnitudes of the low-res logits it is computed from: two bilinear steps of at most four roundings each
# give 8 * 2**-24, and where both taps of an axis fall on one input the weight used here is their rounded
# sum, up to 4 * 2**-24 more: 7.2e-7 in all; 1e-6 leaves a margin.
RELATIVE_ERROR = 1e-6
# Pixels of crossed cells evaluated at once (bounds the float64 blocks to a few tens of MB).
_PIXELS_PER_STEP = 1 << 21


@dataclass(frozen=True)
class AxisCells:
    """One axis of the upscaling, cut into cells of output indices that read the same low-res window."""

    starts: np.ndarray  # (cells,) first output index of each cell
    sizes: np.ndarray  # (cells,) output indices in each cell
    windows: np.ndarray  # (cells,) first low-res index of each cell's window
    weights: torch.Tensor  # (cells, max size, band) float64 weights on the window, zero past ``sizes``
    band: int
    reads: int  # low-res indices 0 .. reads - 1 have a nonzero weight somewhere; the rest are never read
    output_windows: torch.Tensor  # (outputs,) the window of each output index
    output_weights: torch.Tensor  # (outputs, band) float64: its weights on the window

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
        output_weights = padded[np.arange(len(first))[:, None], first[:, None] + np.arange(band)]
        return cls(starts, sizes, windows, torch.from_numpy(weights), band, int(last.max()) + 1,
                   torch.from_numpy(first), torch.from_numpy(output_weights))

    @property
    def ends(self) -> np.ndarray:
        return self.starts + self.sizes


@dataclass
class CellBounds:
    """Per-cell bounds of N masks (``UpscaledThresholds.bounds``): every upscaled logit of cell (n, a, b)
    that torch computes is at least ``low[n, a, b]`` and at most ``high[n, a, b]`` (rounding included)."""

    low: torch.Tensor  # (N, cells_r, cells_c)
    high: torch.Tensor
    low_res: torch.Tensor  # (N, rows, cols) float32: at least the rows and columns the upscaling reads
    row_taps: torch.Tensor  # (cells_r, band_r) low-res rows of each cell's window, clamped to those held
    col_taps: torch.Tensor

    def __len__(self) -> int:
        return len(self.low)

    def take(self, index: torch.Tensor) -> CellBounds:
        """The masks at ``index``."""
        return CellBounds(self.low[index], self.high[index], self.low_res[index], self.row_taps, self.col_taps)

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
        self._row_taps = torch.from_numpy(self.rows.windows[:, None] + np.arange(self.rows.band))
        self._col_taps = torch.from_numpy(self.cols.windows[:, None] + np.arange(self.cols.band))
        self._col_sizes = torch.from_numpy(self.cols.sizes).float()
        self._row_sizes = torch.from_numpy(self.rows.sizes).double()

    @property
    def low_res_extent(self) -> tuple[int, int]:
        """Leading low-res rows and columns that the upscaling reads."""
        return self.rows.reads, self.cols.reads

    def bounds(self, low_res: torch.Tensor) -> CellBounds:
        """Cell bounds of low-res logits (N, side, side), or of their leading rows and columns if these hold
        at least ``low_res_extent``, for ``count_above`` and ``box_above``."""
        low_res = low_res.detach().float().cpu()
        low = _select(_sliding(torch.minimum, low_res, self.rows.band, 1), 1, self.rows.windows)
        high = _select(_sliding(torch.maximum, low_res, self.rows.band, 1), 1, self.rows.windows)
        low = _select(_sliding(torch.minimum, low, self.cols.band, 2), 2, self.cols.windows)
        high = _select(_sliding(torch.maximum, high, self.cols.band, 2), 2, self.cols.windows)
        # Twice the per-pixel bound: a cell's pixels also deviate from its window's range by the rounding of
        # the weights' sums (each within 2**-24 of 1).
        error = 2 * RELATIVE_ERROR * torch.maximum(low.abs(), high.abs())
        # Window taps past the last row (column) held read the last one again: their weights are zero, and
        # its value lies in the window anyway.
        row_taps = self._row_taps.clamp(max=low_res.shape[1] - 1)
        col_taps = self._col_taps.clamp(max=low_res.shape[2] - 1)
        return CellBounds(low - error, high + error, low_res, row_taps, col_taps)

    def crossed_fraction(self, bounds: CellBounds, thresholds: Sequence[float]) -> torch.Tensor:
        """Per mask (N,) float, the fraction of its cells that each threshold crosses, summed over the
        thresholds: how much of the mask ``count_above`` and ``box_above`` would evaluate pixel by pixel."""
        cells = bounds.low[0].numel() if len(bounds) else 1
        crossed = [bounds.crossed(tau).flatten(1).sum(1) for tau in _float32(thresholds)]
        return torch.stack(crossed).sum(0).double() / cells

    def count_above(self, bounds: CellBounds, thresholds: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixels above each threshold (N, T) int64, and which masks are resolved (N,) bool."""
        counts = torch.empty((len(bounds), len(thresholds)), dtype=torch.int64)
        resolved = torch.ones(len(bounds), dtype=torch.bool)
        for k, tau in enumerate(_float32(thresholds)):
            # Integer sums: exact in float32 along a row of cells (at most W), in float64 over the rows.
            counts[:, k] = ((bounds.above(tau).float() @ self._col_sizes).double() @ self._row_sizes).long()
            mask_index, row_cell, col_cell = bounds.crossed(tau).nonzero(as_tuple=True)
            for part in self._steps(len(mask_index)):
                n, a, b = mask_index[part], row_cell[part], col_cell[part]
                pixels_above, undecided = self._pixels(bounds, n, a, b, tau)
                counts[:, k].index_add_(0, n, pixels_above.sum((1, 2)))
                resolved[n[undecided.flatten(1).any(1)]] = False
        return counts, resolved

    def box_above(self, bounds: CellBounds, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Inclusive XYXY boxes (N, 4) int64 of the pixels above ``threshold`` ([0, 0, 0, 0] for none), and
        which masks are resolved (N,) bool.

        Each side of the box is found by scanning lines of cells (rows of cells for the top and bottom)
        inwards from that side: the first line holding a cell wholly above the threshold bounds it, and only
        the crossed cells of the lines before it are evaluated, a line at a time, its outermost pixels first.
        """
        tau = _float32([threshold])[0]
        above, crossed = bounds.above(tau), bounds.crossed(tau)
        resolved = torch.ones(len(bounds), dtype=torch.bool)
        sides = []
        for axis, lines_above, lines_crossed in ((self.rows, _any(above, 2), _any(crossed, 2)),
                                                 (self.cols, _any(above, 1), _any(crossed, 1))):
            for forward in (True, False):
                sides.append(self._scan(bounds, crossed, lines_above, lines_crossed, axis, forward, tau, resolved))
        top, bottom, left, right = sides
        boxes = torch.stack([left, top, right, bottom], dim=1)
        boxes[top < 0] = 0
        return boxes, resolved

    def _scan(self, bounds: CellBounds, crossed: torch.Tensor, lines_above: torch.Tensor, lines_crossed: torch.Tensor,
              axis: AxisCells, forward: bool, tau: float, resolved: torch.Tensor) -> torch.Tensor:
        """First (``forward``) or last output index along ``axis`` holding a pixel above ``tau``, per mask; -1
        where none. ``lines_above`` / ``lines_crossed`` (N, lines): lines of cells across ``axis`` holding a
        cell wholly above / a crossed cell."""
        count, lines = lines_above.shape
        order = torch.arange(lines) if forward else torch.arange(lines - 1, -1, -1)
        outer = torch.from_numpy(axis.starts if forward else axis.ends - 1)
        # Position (in scan order) of the first line holding a cell wholly above: the scan stops there.
        certain = lines_above[:, order]
        stop = torch.where(certain.any(1), certain.int().argmax(1), lines)
        edge = torch.where(stop < lines, outer[order[stop.clamp(max=lines - 1)]], -1)
        candidates = lines_crossed[:, order] & (torch.arange(lines) < stop[:, None])
        position = torch.zeros(count, dtype=torch.int64)
        while True:
            # Next line, at or after ``position``, with crossed cells, for each mask still scanning.
            remaining = candidates & (torch.arange(lines) >= position[:, None])
            active = remaining.any(1)
            if not active.any():
                return edge
            masks = active.nonzero().squeeze(1)
            position[masks] = remaining[masks].int().argmax(1)
            line = order[position[masks]]
            # The line's outermost row (column) of pixels first: where one is surely above, it is the edge.
            hit = self._any_surely_above(bounds, masks, outer[line], axis, tau)
            edge[masks[hit]] = outer[line[hit]]
            candidates[masks[hit]] = False
            masks, line = masks[~hit], line[~hit]
            surely, undecided, offsets, cell_masks = self._line_pixels(bounds, crossed, masks, line, axis, tau)
            # The line decides the edge where its outermost pixel that may be above is surely above.
            edge_surely = self._outermost(surely, offsets, forward)
            edge_maybe = self._outermost(surely | undecided, offsets, forward)
            reduction, start = ("amin", torch.iinfo(torch.int64).max) if forward else ("amax", -1)
            found = torch.full((count,), start, dtype=torch.int64)
            found.scatter_reduce_(0, cell_masks, edge_maybe.where(edge_maybe >= 0, start), reduction)
            sure = torch.full((count,), start, dtype=torch.int64)
            sure.scatter_reduce_(0, cell_masks, edge_surely.where(edge_surely >= 0, start), reduction)
            done = found != start
            resolved[done & (sure != found)] = False
            edge[done] = found[done]
            candidates[done] = False
            position[masks] += 1

    def _line_pixels(self, bounds: CellBounds, crossed: torch.Tensor, masks: torch.Tensor, line: torch.Tensor,
                     axis: AxisCells, tau: float) -> tuple[torch.Tensor, ...]:
        """Pixels of the crossed cells in line ``line[i]`` of mask ``masks[i]``, along ``axis``: occupancy
        (cells, pixels along the axis) by pixels surely above and by undecided ones, with each cell's first
        output index and its mask."""
        along_rows = axis is self.rows
        picked, across = (crossed[masks, line] if along_rows else crossed[masks, :, line]).nonzero(as_tuple=True)
        n, along = masks[picked], line[picked]
        a, b = (along, across) if along_rows else (across, along)
        reduce = 2 if along_rows else 1
        pixels = axis.weights.shape[1]
        surely, undecided = [torch.zeros((0, pixels), dtype=torch.bool)], [torch.zeros((0, pixels), dtype=torch.bool)]
        for part in self._steps(len(n)):
            surely_part, undecided_part = self._pixels(bounds, n[part], a[part], b[part], tau)
            surely.append(_any(surely_part, reduce))
            undecided.append(_any(undecided_part, reduce))
        return torch.cat(surely), torch.cat(undecided), torch.from_numpy(axis.starts)[along], n

    def _steps(self, cells: int) -> list[slice]:
        """Slices of a list of cells to evaluate at once, within the pixel budget."""
        step = max(1, _PIXELS_PER_STEP // (self.rows.weights.shape[1] * self.cols.weights.shape[1]))
        return [slice(start, start + step) for start in range(0, cells, step)]

    def _any_surely_above(self, bounds: CellBounds, masks: torch.Tensor, index: torch.Tensor, axis: AxisCells,
                          tau: float) -> torch.Tensor:
        """Whether output row (``axis`` rows) or column ``index[i]`` of mask ``masks[i]`` holds a pixel surely
        above ``tau``: the whole line of pixels at once, from the per-output weights of both axes."""
        across = self.cols if axis is self.rows else self.rows
        low_res = bounds.low_res if axis is self.rows else bounds.low_res.transpose(1, 2)
        held = low_res.shape[1] - 1
        taps = (axis.output_windows[index][:, None] + torch.arange(axis.band)).clamp(max=held)
        lines = low_res[masks[:, None], taps].double()  # (masks, band, held across)
        weights = axis.output_weights[index][:, None]  # (masks, 1, band)
        combined, magnitudes = (weights @ lines)[:, 0], (weights @ lines.abs())[:, 0]  # (masks, held across)
        values = torch.zeros((len(masks), len(across.output_windows)), dtype=torch.float64)
        margin = torch.zeros_like(values)
        for tap in range(across.band):
            taps = (across.output_windows + tap).clamp(max=low_res.shape[2] - 1)
            tap_weights = across.output_weights[:, tap]
            values += combined.index_select(1, taps) * tap_weights
            margin += magnitudes.index_select(1, taps) * tap_weights
        return (values - tau > margin * RELATIVE_ERROR).any(1)

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
        rows, row_padding = self.rows.weights[a], self._row_padding[a]
        cols, col_padding = self.cols.weights[b], self._col_padding[b]
        windows = bounds.low_res[n[:, None, None], bounds.row_taps[a][:, :, None], bounds.col_taps[b][:, None, :]]
        windows = windows.double()
        cols = cols.transpose(1, 2)
        distance = (rows @ windows @ cols).sub_(tau)
        # Padding pixels lie infinitely far below: neither above nor undecided.
        distance += row_padding[:, :, None]
        distance += col_padding[:, None, :]
        margin = (rows @ windows.abs_() @ cols).mul_(RELATIVE_ERROR)
        above = distance > margin
        undecided = ~(distance.abs_() > margin)  # NaN included
        return above, undecided


def _padding(axis: AxisCells) -> torch.Tensor:
    """(cells, max size) float64: 0 at each cell's output indices, -inf past them."""
    past = torch.arange(axis.weights.shape[1]) >= torch.from_numpy(axis.sizes)[:, None]
    return torch.zeros(past.shape, dtype=torch.float64).masked_fill_(past, -torch.inf)


def _select(values: torch.Tensor, dim: int, index: np.ndarray) -> torch.Tensor:
    """``values.index_select(dim, index)`` for an index made of a few runs of consecutive values (cell windows:
    one per low-res index, repeated at the edges), joined from views: several times faster on CPU."""
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    runs = np.split(index, breaks)
    if len(runs) == 1:
        return values.narrow(dim, int(index[0]), len(index))
    return torch.cat([values.narrow(dim, int(run[0]), len(run)) for run in runs], dim)


def _sliding(reduce: Callable, values: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """``reduce`` (torch.minimum or torch.maximum) over windows [i, i + width) along ``dim``, cut short at the
    end; elementwise over shifted slices, which is much faster on CPU than pooling or gathering."""
    result = values.clone()
    length = values.shape[dim]
    for shift in range(1, min(width, length)):
        head = result.narrow(dim, 0, length - shift)
        reduce(head, values.narrow(dim, shift, length - shift), out=head)
    return result


def _any(flags: torch.Tensor, dim: int) -> torch.Tensor:
    """``flags.any(dim)`` of a bool tensor, as a max over its bytes: several times faster on CPU."""
    return flags.view(torch.uint8).amax(dim).bool()


def _float32(values: Sequence[float]) -> list[float]:
    return [float(np.float32(value)) for value in values]
