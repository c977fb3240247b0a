"""Load test of ``sam-serve``: N clients on loopback for a fixed time, mixing uploads of 35-megapixel photos,
clicks and "segment everything"; then every mask the server returned is checked against the library's.

    .venv/bin/python benchmarks/serve_load.py --clients 8 32 --seconds 60 [--output results.json]

For each client count the script starts ``sam-serve`` (the shipped model unless ``--model``) on a free
127.0.0.1 port with its default limits (``--kept-images`` raised so that every client's images stay open),
reads the page's token as a browser does (``<meta name="sam-serve-token">``) and runs the clients:

- each opens a 1200x800 photo first, then loops until the time is up: 20 % uploads of one of two 35-megapixel
  JPEGs (scikit-image photos upscaled to 7200x4860, made here), 15 % "segment everything" on its 1200x800
  photo, 65 % clicks (one of six fixed points), on its 35-megapixel image when it has one open (30 %) or its
  1200x800 photo. A refused request (503) waits a quarter second before the client goes on.

It reports requests served, refused with 503/429, expired (404 for an image dropped by ``--kept-images``; the
client opens it again), errors (any other status, or a failed connection), p50/p95
click latency (request to answer, on each image size), the server's peak RSS (``VmHWM`` of its process, and
the largest RSS sampled every 50 ms) and wrong masks: each distinct answer is compared with
``Predictor.predict`` (clicks) or ``AutomaticMaskGenerator.generate`` (segment everything) on the same model,
image and prompt, after the clients have stopped. Bounded: at most ``--seconds`` of load per client count,
and every request times out after 300 s.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import torch
from PIL import Image

import sam_core
from sam_core.serve.images import ImageLimits, decode_image
from sam_core.serve.masks_io import mask_to_runs

ROOT = Path(__file__).resolve().parents[1]
TOKEN_META = re.compile(r'<meta\s+name="sam-serve-token"\s+content="([^"]*)"')
BIG_SIZE = (7200, 4860)  # 35.0 megapixels
MEDIUM_SIZE = (1200, 800)
POINTS = [(0.5, 0.5), (0.3, 0.4), (0.7, 0.6), (0.2, 0.8), (0.8, 0.25), (0.45, 0.7)]  # fractions of W, H
POINTS_PER_SIDE = 16


def _jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def make_images() -> dict[str, bytes]:
    """The test's images, made from scikit-image's photos: two 35-megapixel JPEGs and one 1200x800."""
    # Imported here: only this benchmark needs scikit-image's sample photos.
    from skimage import data

    return {"big_chelsea.jpg": _jpeg(cv2.resize(data.chelsea(), BIG_SIZE, interpolation=cv2.INTER_CUBIC)),
            "big_coffee.jpg": _jpeg(cv2.resize(data.coffee(), BIG_SIZE, interpolation=cv2.INTER_CUBIC)),
            "medium_astronaut.jpg": _jpeg(cv2.resize(data.astronaut(), MEDIUM_SIZE, interpolation=cv2.INTER_AREA))}


def _digest(runs: list) -> str:
    return hashlib.sha1(json.dumps(runs).encode()).hexdigest()


@dataclass
class Tally:
    """What the clients saw; one lock for all of them."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    served: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)
    expired: Counter = field(default_factory=Counter)  # 404: the image was dropped by --kept-images
    errors: Counter = field(default_factory=Counter)
    error_examples: list = field(default_factory=list)
    click_ms: dict = field(default_factory=lambda: defaultdict(list))
    # (image name, point index) -> Counter of mask digests; image name -> Counter of "everything" digests
    clicks: dict = field(default_factory=lambda: defaultdict(Counter))
    everything: dict = field(default_factory=lambda: defaultdict(Counter))

    def error(self, kind: str, what: str) -> None:
        with self.lock:
            self.errors[kind] += 1
            if len(self.error_examples) < 10:
                self.error_examples.append(f"{kind}: {what}")


class Client(threading.Thread):
    def __init__(self, index: int, url: str, token: str, images: dict[str, bytes], sizes: dict[str, tuple],
                 deadline: float, tally: Tally) -> None:
        super().__init__(daemon=True)
        self.rng = random.Random(index)
        self.http = httpx.Client(base_url=url, headers={"X-Sam-Serve-Token": token}, timeout=300)
        self.images, self.sizes, self.deadline, self.tally = images, sizes, deadline, tally
        self.open: dict[str, tuple[str, str]] = {}  # "medium" / "big" -> (image name, image id)

    def run(self) -> None:
        try:
            while time.monotonic() < self.deadline:
                if "medium" not in self.open:
                    self.upload("medium", "medium_astronaut.jpg")
                    continue
                draw = self.rng.random()
                if draw < 0.20:
                    self.upload("big", self.rng.choice(["big_chelsea.jpg", "big_coffee.jpg"]))
                elif draw < 0.35:
                    self.segment_everything()
                else:
                    self.click("big" if "big" in self.open and self.rng.random() < 0.3 else "medium")
        finally:
            self.http.close()

    def _refused(self, kind: str, response: httpx.Response) -> bool:
        if response.status_code in (429, 503):
            with self.tally.lock:
                self.tally.refused[kind] += 1
            time.sleep(0.25)
            return True
        if response.status_code == 404 and kind != "upload":  # dropped by --kept-images: open it again
            self.open.clear()
            with self.tally.lock:
                self.tally.expired[kind] += 1
            return True
        return False

    def upload(self, slot: str, name: str) -> None:
        try:
            with self.http.stream("POST", "/api/images", params={"name": name}, content=self.images[name]) as answer:
                if answer.status_code != 200:
                    answer.read()
                    if not self._refused("upload", answer):
                        self.tally.error("upload", f"{answer.status_code} {answer.text[:200]}")
                    return
                last = None
                for line in answer.iter_lines():
                    if line:
                        last = json.loads(line)
        except httpx.HTTPError as error:
            self.tally.error("upload", repr(error))
            return
        if last is None or "image" not in last:
            self.tally.error("upload", f"stream ended with {last}")
            return
        self.open[slot] = (name, last["image"]["id"])
        with self.tally.lock:
            self.tally.served["upload " + slot] += 1

    def _masks_digest(self, kind: str, url: str, **body: Any) -> tuple[str | None, float]:
        """POST ``url``: (the digest of the answer's masks, or None when refused or failed (counted), and the
        milliseconds from the request to the whole answer)."""
        started = time.perf_counter()
        try:
            answer = self.http.post(url, **body)
        except httpx.HTTPError as error:
            self.tally.error(kind, repr(error))
            return None, 0.0
        elapsed = (time.perf_counter() - started) * 1000
        if answer.status_code != 200:
            if not self._refused(kind, answer):
                self.tally.error(kind, f"{answer.status_code} {answer.text[:200]}")
            return None, elapsed
        return _digest([mask["runs"] for mask in answer.json()["masks"]]), elapsed

    def click(self, slot: str) -> None:
        name, image_id = self.open[slot]
        index = self.rng.randrange(len(POINTS))
        width, height = self.sizes[name]
        point = [POINTS[index][0] * width, POINTS[index][1] * height]
        digest, elapsed = self._masks_digest("click", f"/api/images/{image_id}/predict",
                                    json={"points": [point], "labels": [1], "multimask": True})
        if digest is not None:
            with self.tally.lock:
                self.tally.served["click " + slot] += 1
                self.tally.click_ms[slot].append(elapsed)
                self.tally.clicks[name, index][digest] += 1

    def segment_everything(self) -> None:
        name, image_id = self.open["medium"]
        digest, _ = self._masks_digest("everything", f"/api/images/{image_id}/everything")
        if digest is not None:
            with self.tally.lock:
                self.tally.served["everything"] += 1
                self.tally.everything[name][digest] += 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rss_of(pid: int) -> tuple[int, int]:
    """(RSS, peak RSS ``VmHWM``) of a process, in bytes, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def run_load(model: str, clients: int, seconds: float, images: dict[str, bytes], sizes: dict[str, tuple]
             ) -> dict[str, Any]:
    port = _free_port()
    kept = 2 * clients + 4
    command = [sys.executable, "-m", "sam_core.cli.serve", "--model", model, "--port", str(port),
               "--kept-images", str(kept), "--points-per-side", str(POINTS_PER_SIDE)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        while True:
            try:
                page = httpx.get(url + "/", timeout=5)
                break
            except httpx.HTTPError:
                if server.poll() is not None or time.monotonic() - started > 120:
                    raise RuntimeError(f"sam-serve did not start: {server.stderr.read().decode()}") from None
                time.sleep(0.3)
        token = TOKEN_META.search(page.text).group(1)
        idle_rss = _rss_of(server.pid)[0]
        sampled, stop = [0], threading.Event()

        def sample() -> None:
            while not stop.is_set():
                sampled[0] = max(sampled[0], _rss_of(server.pid)[0])
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        tally = Tally()
        deadline = time.monotonic() + seconds
        threads = [Client(i, url, token, images, sizes, deadline, tally) for i in range(clients)]
        load_started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - load_started
        stop.set()
        sampler.join()
        rss, peak = _rss_of(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    return {"clients": clients, "seconds": seconds, "wall_s": round(wall, 1), "kept_images": kept,
            "idle_rss_gb": idle_rss / 1e9, "peak_rss_gb": peak / 1e9, "sampled_peak_rss_gb": sampled[0] / 1e9,
            "end_rss_gb": rss / 1e9, "tally": tally}


def verify(model_path: str, tally: Tally, images: dict[str, bytes]) -> tuple[int, int]:
    """(wrong answers, answers checked): each distinct click and "segment everything" answer against the
    library's, on the image as the server decoded it."""
    model = sam_core.load_sam(model_path)
    wrong = checked = 0
    by_image = defaultdict(dict)
    for (name, index), digests in tally.clicks.items():
        by_image[name][index] = digests
    for name, prompts in by_image.items():
        rgb = decode_image(images[name], name, ImageLimits())
        predictor = sam_core.Predictor(model)
        predictor.set_image(rgb)
        height, width = rgb.shape[:2]
        for index, digests in prompts.items():
            point = np.array([[POINTS[index][0] * width, POINTS[index][1] * height]])
            masks, _, _ = predictor.predict(point_coords=point, point_labels=np.array([1]))
            expected = _digest([mask_to_runs(mask) for mask in masks])
            wrong += sum(count for digest, count in digests.items() if digest != expected)
            checked += sum(digests.values())
    for name, digests in tally.everything.items():
        rgb = decode_image(images[name], name, ImageLimits())
        records = sam_core.AutomaticMaskGenerator(model, points_per_side=POINTS_PER_SIDE).generate(rgb)
        records.sort(key=lambda record: -record["area"])
        expected = _digest([mask_to_runs(record["segmentation"]) for record in records])
        wrong += sum(count for digest, count in digests.items() if digest != expected)
        checked += sum(digests.values())
    return wrong, checked


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def report(result: dict[str, Any], wrong: int, checked: int) -> dict[str, Any]:
    tally: Tally = result["tally"]
    latency = {slot: {"n": len(values), "p50_ms": round(_percentile(values, 50)),
                      "p95_ms": round(_percentile(values, 95))} for slot, values in tally.click_ms.items()}
    every_click = [value for values in tally.click_ms.values() for value in values]
    latency["all"] = {"n": len(every_click), "p50_ms": round(_percentile(every_click, 50)),
                      "p95_ms": round(_percentile(every_click, 95))}
    summary = {key: value for key, value in result.items() if key != "tally"}
    summary.update(served=dict(tally.served), served_total=sum(tally.served.values()), refused=dict(tally.refused),
                   refused_total=sum(tally.refused.values()), expired=dict(tally.expired), errors=dict(tally.errors),
                   errors_total=sum(tally.errors.values()), error_examples=tally.error_examples,
                   click_latency=latency, wrong_masks=wrong, answers_checked=checked)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "weights" / "sam_vit_tiny_shapes.safetensors"))
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--seconds", type=float, default=60.0, help="load time per client count (at most 600)")
    parser.add_argument("--output", help="also write the figures to this JSON file")
    args = parser.parse_args()
    if not 0 < args.seconds <= 600 or not all(0 < n <= 64 for n in args.clients):
        parser.error("--seconds must be in (0, 600] and each --clients in 1..64")
    images = make_images()
    sizes = {name: Image.open(io.BytesIO(data)).size for name, data in images.items()}
    print(f"images: {', '.join(f'{n} {w}x{h} {len(images[n]) / 1e6:.1f} MB' for n, (w, h) in sizes.items())}")
    summaries = []
    for clients in args.clients:
        result = run_load(args.model, clients, args.seconds, images, sizes)
        wrong, checked = verify(args.model, result["tally"], images)
        summary = report(result, wrong, checked)
        summaries.append(summary)
        print(json.dumps(summary, indent=1))
    print(f"\n{'clients':>7} {'served':>7} {'refused':>7} {'errors':>6} {'wrong':>5} {'click p50':>9} "
          f"{'click p95':>9} {'peak RSS':>8}")
    for s in summaries:
        print(f"{s['clients']:>7} {s['served_total']:>7} {s['refused_total']:>7} {s['errors_total']:>6} "
              f"{s['wrong_masks']:>5} {s['click_latency']['all']['p50_ms']:>7}ms "
              f"{s['click_latency']['all']['p95_ms']:>7}ms "
              f"{s['peak_rss_gb']:>6.2f}GB")
    if args.output:
        Path(args.output).write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                                 "torch_threads": torch.get_num_threads(),
                                                 "runs": summaries}, indent=1))


if __name__ == "__main__":
    main()
