"""sam-serve safe by default and under load: foreign hosts and origins are refused, the API needs the page's token,
work beyond the queues' bounds gets 503 + Retry-After before the upload is decoded, a client that goes away
frees its slot, and concurrent clicks and "segment everything" return exactly the library's masks.

Security checks go through FastAPI's TestClient; load checks through a real uvicorn on a free loopback port."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import sam_core
from sam_core.io.files import png_bytes
from sam_core.jobs.samples import shapes_scenes

pytest.importorskip("fastapi")  # the serve extra, which CI installs
import httpx  # noqa: E402
import uvicorn  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

import sam_core.serve.app as serve_app  # noqa: E402
from sam_core.serve import ImageLimits, create_app  # noqa: E402
from sam_core.serve.app import ServeLimits  # noqa: E402
from sam_core.serve.encoding import EncodeStream  # noqa: E402
from sam_core.serve.masks_io import runs_to_mask  # noqa: E402
from sam_core.serve.security import TOKEN_HEADER, Access, page_token  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "weights" / "sam_vit_tiny_shapes.safetensors"
EVERY_MASK = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
LIMITS = ImageLimits(max_bytes=2_000_000, max_pixels=300_000)


def _png(rgb: np.ndarray) -> bytes:
    return png_bytes(np.ascontiguousarray(rgb[..., ::-1]))  # OpenCV's channel order


@pytest.fixture(scope="module")
def model():
    return sam_core.load_sam(MODEL)


@pytest.fixture(scope="module")
def scenes() -> list[np.ndarray]:
    return [scene.image for scene in shapes_scenes()[:2]]


# --- safe by default (TestClient) ---------------------------------------------------------------------------


def _client(app, base_url: str = "http://127.0.0.1:8000") -> TestClient:
    return TestClient(app, base_url=base_url)


def test_foreign_hosts_are_refused_and_named_ones_allowed(model):
    app = create_app(model, access=Access(token="t0k", allowed_hosts=("segment.lan",)))
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "segment.lan:8000"):
        assert _client(app, f"http://{host}").get("/").status_code == 200, host
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", "192.168.1.5:8000"):
        response = _client(app, f"http://{host}").get("/")
        assert response.status_code == 403 and "--allow-host" in response.json()["error"], host
        refused = _client(app, f"http://{host}").get("/api/info", headers={TOKEN_HEADER: "t0k"})
        assert refused.status_code == 403, host
    # Bound to every interface: a bare address is this machine's own; a name still needs --allow-host.
    everywhere = create_app(model, access=Access(token="t0k", bound_host="0.0.0.0"))
    assert _client(everywhere, "http://192.168.1.5:8000").get("/").status_code == 200
    assert _client(everywhere, "http://evil.example:8000").get("/").status_code == 403


def test_the_api_needs_the_pages_token_and_its_own_origin(model, scenes, monkeypatch):
    app = create_app(model, "shapes", None, LIMITS)
    client = _client(app)
    page = client.get("/")
    for header, value in [("content-security-policy", "script-src 'self'"), ("x-content-type-options", "nosniff"),
                          ("referrer-policy", "no-referrer")]:
        assert value in page.headers[header]
    assert "<script>" not in page.text and "<style>" not in page.text and 'src="/app.js"' in page.text
    token = page_token(page.text)
    assert len(token) >= 32 and token != page_token(_client(create_app(model)).get("/").text)  # per server

    decoded = []
    monkeypatch.setattr(serve_app, "inspect_image", lambda *args: decoded.append(args) or (256, 256))
    upload = _png(scenes[0])
    same_origin = {"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"}
    refused = [
        {},  # no token (a script, or a cross-site form post, which cannot set headers)
        {"Origin": "http://evil.example"},
        {"Origin": "http://evil.example", TOKEN_HEADER: token},  # even with the token: another origin
        {"Sec-Fetch-Site": "cross-site", TOKEN_HEADER: token},
        {"Origin": "null", TOKEN_HEADER: token},
        {**same_origin, TOKEN_HEADER: token[:-1] + "x"},
    ]
    for headers in refused:
        response = client.post("/api/images", params={"name": "a.png"}, content=upload, headers=headers)
        assert response.status_code == 403, headers
        assert "access-control-allow-origin" not in response.headers
    preflight = client.options("/api/images", headers={"Origin": "http://evil.example",
                                                       "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers
    assert client.get("/api/info").status_code == 403
    assert decoded == []  # nothing refused reached the image code

    monkeypatch.undo()
    response = client.post("/api/images", params={"name": "a.png"}, content=upload,
                           headers={**same_origin, TOKEN_HEADER: token})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
    image = json.loads(response.text.splitlines()[-1])["image"]
    predicted = client.post(f"/api/images/{image['id']}/predict", json={"points": [[60, 70]], "labels": [1]},
                            headers={TOKEN_HEADER: token})
    assert predicted.status_code == 200 and len(predicted.json()["masks"]) == 3


def test_a_chosen_token_guards_the_page_too(model):
    client = _client(create_app(model, access=Access(token="s3cret/+", page_needs_token=True)))
    assert client.get("/").status_code == 403
    assert client.get("/", params={"token": "wrong"}).status_code == 403
    page = client.get("/", params={"token": "s3cret/+"})
    assert page.status_code == 200 and page_token(page.text) == "s3cret/+"
    assert client.get("/api/info").status_code == 403
    assert client.get("/api/info", headers={TOKEN_HEADER: "s3cret/+"}).status_code == 200


# --- under load (a real uvicorn) ------------------------------------------------------------------------------


class Gate:
    """A forward hook on the encoder's first block that holds every encode there while closed."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.opened.set()
        self.waiting = threading.Event()

    def __call__(self, *_) -> None:
        if not self.opened.is_set():
            self.waiting.set()
            self.opened.wait(60)


class Live:
    def __init__(self, url: str, token: str, gate: Gate, calls: dict[str, int], last_block_runs: list) -> None:
        self.url, self.token, self.gate, self.calls, self.last_block_runs = url, token, gate, calls, last_block_runs

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={TOKEN_HEADER: self.token}, timeout=120)

    def queue(self, name: str) -> dict[str, int]:
        with self.client() as client:
            return client.get("/api/info").json()["queues"][name]

    def open(self, rgb: np.ndarray, name: str = "scene.png") -> tuple[int, list[dict], httpx.Headers]:
        with self.client() as client:
            response = client.post("/api/images", params={"name": name}, content=_png(rgb))
        if response.status_code != 200:
            return response.status_code, [response.json()], response.headers
        return 200, [json.loads(line) for line in response.text.splitlines()], response.headers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def live(model):
    gate, calls, last_block_runs = Gate(), {"inspect": 0, "decode": 0}, []
    model.image_encoder.blocks[0].register_forward_hook(gate)
    model.image_encoder.blocks[-1].register_forward_hook(lambda *_: last_block_runs.append(threading.get_ident()))
    inspect, decode = serve_app.inspect_image, serve_app.decode_image

    def counted(name, function):
        def call(*args):
            calls[name] += 1
            return function(*args)
        return call

    port = _free_port()
    app = create_app(model, "shapes", None, LIMITS, EVERY_MASK,
                     serve_limits=ServeLimits(kept_images=4, encodes=2, everything=2, predicts=16, predicts_at_once=2))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(serve_app, "inspect_image", counted("inspect", inspect))
        patch.setattr(serve_app, "decode_image", counted("decode", decode))
        thread.start()
        deadline = time.monotonic() + 60
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        yield Live(url, page_token(httpx.get(url + "/").text), gate, calls, last_block_runs)
        server.should_exit = True
        thread.join(30)


def _expected_masks(model, rgb: np.ndarray, prompt: dict) -> tuple[np.ndarray, np.ndarray]:
    predictor = sam_core.Predictor(model)
    predictor.set_image(rgb)
    masks, scores, _ = predictor.predict(point_coords=np.array(prompt["points"]),
                                         point_labels=np.array(prompt["labels"]))
    return masks, scores


def _assert_librarys(result: dict, masks: np.ndarray, scores: np.ndarray) -> None:
    assert len(result["masks"]) == len(masks)
    for got, mask, score in zip(result["masks"], masks, scores):
        assert np.array_equal(runs_to_mask(got["runs"], result["height"], result["width"]), mask)
        assert got["score"] == pytest.approx(float(score))


def test_uploads_over_the_bound_get_503_before_decoding_and_a_click_after_the_storm_is_the_librarys(
        live, model, scenes):
    live.gate.opened.clear()
    live.gate.waiting.clear()
    with ThreadPoolExecutor(12) as pool:
        first = pool.submit(live.open, scenes[0])  # encodes, held at the gate
        assert live.gate.waiting.wait(60)
        second = pool.submit(live.open, scenes[1])  # admitted: waits for its turn
        deadline = time.monotonic() + 30
        while live.queue("encodes")["admitted"] < 2 or live.calls["inspect"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        calls = dict(live.calls)
        assert calls == {"inspect": 2, "decode": 1}  # header checks of both, pixels of the running one only
        storm = [pool.submit(live.open, scenes[i % 2]) for i in range(8)]
        for future in storm:
            status, events, headers = future.result()
            assert status == 503 and int(headers["retry-after"]) >= 1
            assert events[0]["error"].startswith("the server is busy") and "--max-encodes 2" in events[0]["error"]
        assert live.calls == calls  # no refused upload was decoded, not even its header
        live.gate.opened.set()
        results = [first.result(), second.result()]
    assert [status for status, _, _ in results] == [200, 200]
    assert results[1][1][0] == {"queued": 1}  # the second one was told it waited
    prompt = {"points": [[60.5, 70.25]], "labels": [1], "multimask": True}
    with live.client() as client:
        result = client.post(f"/api/images/{results[0][1][-1]['image']['id']}/predict", json=prompt).json()
    _assert_librarys(result, *_expected_masks(model, scenes[0], prompt))
    assert live.queue("encodes") == {"size": 2, "admitted": 0, "refused": 8}


def test_a_client_that_goes_away_mid_encode_frees_its_slot(live, scenes, monkeypatch):
    closed = threading.Event()
    close = EncodeStream.close
    monkeypatch.setattr(EncodeStream, "close", lambda stream: (close(stream), closed.set()))
    live.gate.opened.clear()
    live.gate.waiting.clear()
    with live.client() as client:
        with client.stream("POST", "/api/images", params={"name": "gone.png"}, content=_png(scenes[0])) as response:
            assert response.status_code == 200
            assert live.gate.waiting.wait(60)  # encoding, at the first block
        # The connection is closed with the encode under way; its slot is held until the encode has stopped.
    assert closed.wait(30)  # the server saw the client go
    assert live.queue("encodes")["admitted"] == 1
    runs_before = len(live.last_block_runs)
    live.gate.opened.set()
    deadline = time.monotonic() + 30
    while live.queue("encodes")["admitted"]:
        assert time.monotonic() < deadline, "the slot of a client that went away was not freed"
        time.sleep(0.05)
    assert len(live.last_block_runs) == runs_before  # stopped after the first block: the last never ran
    assert live.open(scenes[1])[0] == 200


def test_concurrent_clicks_on_different_images_and_the_same_image_are_the_librarys(live, model, scenes):
    ids = [live.open(rgb)[1][-1]["image"]["id"] for rgb in scenes]
    prompts = [{"points": [[30 + 25 * k, 40 + 20 * k]], "labels": [1], "multimask": True} for k in range(4)]
    jobs = [(index, prompt) for prompt in prompts for index in (0, 1)] * 2  # each image several times at once

    def click(job):
        index, prompt = job
        with live.client() as client:
            return client.post(f"/api/images/{ids[index]}/predict", json=prompt)

    with ThreadPoolExecutor(len(jobs)) as pool:
        responses = list(pool.map(click, jobs))
    expected = {}
    for index, rgb in enumerate(scenes):
        predictor = sam_core.Predictor(model)
        predictor.set_image(rgb)
        for k, prompt in enumerate(prompts):
            masks, scores, _ = predictor.predict(point_coords=np.array(prompt["points"]),
                                                 point_labels=np.array(prompt["labels"]))
            expected[index, k] = masks, scores
    for (index, prompt), response in zip(jobs, responses):
        assert response.status_code == 200
        _assert_librarys(response.json(), *expected[index, prompts.index(prompt)])


def test_two_segment_everything_requests_at_once_return_the_generators_records(live, model, scenes):
    image_id = live.open(scenes[0])[1][-1]["image"]["id"]

    def everything(_):
        with live.client() as client:
            return client.post(f"/api/images/{image_id}/everything")

    with ThreadPoolExecutor(2) as pool:
        responses = list(pool.map(everything, range(2)))
    records = sorted(sam_core.AutomaticMaskGenerator(model, **EVERY_MASK).generate(scenes[0]), key=lambda r: -r["area"])
    assert len(records) > 0
    for response in responses:
        assert response.status_code == 200
        masks = response.json()["masks"]
        assert len(masks) == len(records)
        for got, record in zip(masks, records):
            assert np.array_equal(runs_to_mask(got["runs"], *scenes[0].shape[:2]), record["segmentation"])
            assert got["score"] == pytest.approx(record["predicted_iou"])


def test_the_cli_warns_when_bound_to_the_network_without_a_token(monkeypatch, capsys):
    from sam_core.cli.serve import main

    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.append((app, options)))
    assert main(["--model", str(MODEL), "--host", "0.0.0.0", "--max-encodes", "1"]) == 0
    warning = capsys.readouterr().err
    assert "warning" in warning and "no login" in warning and "--token" in warning
    assert main(["--model", str(MODEL), "--host", "0.0.0.0", "--token", "s3cret", "--allow-host", "box.lan"]) == 0
    printed = capsys.readouterr().err
    assert "warning" not in printed and "/?token=s3cret" in printed
    app, options = started[-1]
    assert options["host"] == "0.0.0.0"
    client = _client(app, "http://box.lan:8000")
    assert client.get("/").status_code == 403
    assert page_token(client.get("/", params={"token": "s3cret"}).text) == "s3cret"
    assert client.get("/api/info", headers={TOKEN_HEADER: "s3cret"}).json()["queues"]["encodes"]["size"] == 2
    assert _client(app, "http://other.lan:8000").get("/", params={"token": "s3cret"}).status_code == 403
