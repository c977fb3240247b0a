// The page of sam-serve: plain JavaScript, no build step. The server decodes (Predictor.predict); this page
// collects prompts, asks for masks and paints them. State lives in window.samApp (the browser test reads it).
"use strict";

const $ = (id) => document.getElementById(id);
const MASK_COLOR = [30, 144, 255, 150];
const HOVER_COLOR = [255, 200, 0, 110];
const DRAG_PIXELS = 4; // a press that moves less than this (on screen) is a click, not a box
// The server's token, in the page's own HTML: every API call carries it (another site's page cannot read it).
const TOKEN = document.querySelector('meta[name="sam-serve-token"]').content;

const samApp = {
  image: null, // {id, name, width, height}
  points: [], labels: [], box: null,
  masks: [], selected: 0, everything: false,
  latencies: [], // click (or box release) to mask painted, ms
  maskVersion: 0, promptVersion: 0, busy: false, hoverBusy: false,
};
window.samApp = samApp;

function showError(message) { $("error").textContent = message; $("error").classList.add("shown"); }
function clearError() { $("error").textContent = ""; $("error").classList.remove("shown"); }
function setStatus(text) { $("status").textContent = text; }

async function errorOf(response) {
  try { return (await response.json()).error || response.statusText; } catch (e) { return response.statusText; }
}

function api(url, options = {}) {
  return fetch(url, {...options, headers: {...(options.headers || {}), "X-Sam-Serve-Token": TOKEN}});
}

async function postJSON(url, body) {
  const response = await api(url, {method: "POST", headers: {"Content-Type": "application/json"},
                                   body: JSON.stringify(body)});
  if (!response.ok) throw new Error(await errorOf(response));
  return response;
}

// Opening an image: the server validates and encodes it, streaming {"progress"} lines, then {"image"}.
async function openImage(url, body, label) {
  clearError();
  setStatus(`Opening ${label}...`);
  const progress = $("progress");
  progress.hidden = false; progress.value = 0;
  try {
    const response = await api(url, {method: "POST", body});
    if (!response.ok) throw new Error(await errorOf(response));
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "", image = null;
    for (;;) {
      const {value, done} = await reader.read();
      if (value) buffered += decoder.decode(value, {stream: true});
      let newline;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const event = JSON.parse(buffered.slice(0, newline));
        buffered = buffered.slice(newline + 1);
        if (event.error) throw new Error(event.error);
        if (event.queued !== undefined) setStatus(`Opening ${label}: waiting for ${event.queued} image(s) ahead...`);
        if (event.progress !== undefined) {
          progress.value = event.progress;
          setStatus(`Computing the embedding of ${label}: ${Math.round(event.progress * 100)} %`);
        }
        if (event.image) image = event.image;
      }
      if (done) break;
    }
    if (!image) throw new Error(`${label}: the server closed the connection before the embedding was ready`);
    await showImage(image);
    setStatus(`${image.name} (${image.width}x${image.height}): click or drag a box.`);
  } catch (error) {
    showError(error.message);
    setStatus(samApp.image ? `${samApp.image.name}: click or drag a box.` : "Open an image to start.");
  } finally {
    progress.hidden = true;
  }
}

async function showImage(image) {
  const response = await api(`/api/images/${image.id}/pixels`);
  if (!response.ok) throw new Error(await errorOf(response));
  const pixels = new Image();
  pixels.src = URL.createObjectURL(await response.blob());
  await pixels.decode();
  URL.revokeObjectURL(pixels.src);
  for (const id of ["image-canvas", "mask-canvas", "hover-canvas", "prompt-canvas"]) {
    $(id).width = image.width; $(id).height = image.height;
  }
  $("image-canvas").getContext("2d").drawImage(pixels, 0, 0);
  samApp.image = image;
  resetPrompts();
}

function resetPrompts() {
  samApp.promptVersion += 1;
  samApp.points = []; samApp.labels = []; samApp.box = null;
  samApp.masks = []; samApp.selected = 0; samApp.everything = false;
  clearCanvas("mask-canvas"); clearCanvas("hover-canvas"); drawPrompts(); showChoices();
}

function clearCanvas(id) { const c = $(id); c.getContext("2d").clearRect(0, 0, c.width, c.height); }

// Masks arrive as row-major run lengths, starting with background.
function paintMasks(canvasId, masks, colors) {
  const canvas = $(canvasId);
  const {width, height} = canvas;
  const data = new ImageData(width, height);
  const words = new Uint32Array(data.data.buffer);
  masks.forEach((mask, index) => {
    const [r, g, b, a] = colors[index];
    const word = (a << 24) | (b << 16) | (g << 8) | r; // little-endian RGBA
    let position = 0;
    mask.runs.forEach((run, k) => {
      if (k % 2 === 1) words.fill(word, position, position + run);
      position += run;
    });
  });
  canvas.getContext("2d").putImageData(data, 0, 0);
}

function randomColor(index) {
  const hue = (index * 137.5) % 360, s = 0.75, l = 0.5;
  const f = (n) => { const k = (n + hue / 30) % 12;
    return Math.round(255 * (l - s * Math.min(l, 1 - l) * Math.max(-1, Math.min(k - 3, 9 - k, 1)))); };
  return [f(0), f(8), f(4), 140];
}

function drawPrompts(dragBox) {
  const canvas = $("prompt-canvas");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const scale = canvas.width / canvas.getBoundingClientRect().width || 1; // screen pixel in image pixels
  const box = dragBox || samApp.box;
  if (box) {
    ctx.strokeStyle = "#00e676"; ctx.lineWidth = 2 * scale;
    ctx.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
  }
  samApp.points.forEach(([x, y], i) => {
    ctx.beginPath(); ctx.arc(x, y, 5 * scale, 0, 2 * Math.PI);
    ctx.fillStyle = samApp.labels[i] === 1 ? "#00c853" : "#d50000"; ctx.fill();
    ctx.lineWidth = 1.5 * scale; ctx.strokeStyle = "#fff"; ctx.stroke();
  });
}

function showChoices() {
  const holder = $("mask-choices");
  holder.replaceChildren();
  if (samApp.everything || samApp.masks.length < 2) return;
  samApp.masks.forEach((mask, index) => {
    const button = document.createElement("button");
    button.textContent = `mask ${index + 1} (${mask.score.toFixed(3)})`;
    button.dataset.index = String(index);
    if (index === samApp.selected) button.classList.add("selected");
    button.addEventListener("click", () => { samApp.selected = index; paintSelected(); showChoices(); });
    holder.appendChild(button);
  });
}

function paintSelected() {
  if (samApp.masks.length) paintMasks("mask-canvas", [samApp.masks[samApp.selected]], [MASK_COLOR]);
  else clearCanvas("mask-canvas");
  samApp.maskVersion += 1;
}

function promptBody(extraPoint) {
  const points = samApp.points.slice(), labels = samApp.labels.slice();
  if (extraPoint) { points.push(extraPoint); labels.push(1); }
  return {points, labels, box: samApp.box, multimask: $("multimask").checked};
}

function bestIndex(masks) {
  let best = 0;
  masks.forEach((mask, i) => { if (mask.score > masks[best].score) best = i; });
  return best;
}

async function predict(startedAt) {
  if (!samApp.image) return;
  if (!samApp.points.length && !samApp.box) { samApp.masks = []; paintSelected(); showChoices(); return; }
  samApp.busy = true;
  try {
    const response = await postJSON(`/api/images/${samApp.image.id}/predict`, promptBody(null));
    const result = await response.json();
    samApp.masks = result.masks; samApp.selected = bestIndex(result.masks); samApp.everything = false;
    clearCanvas("hover-canvas");
    paintSelected(); showChoices(); clearError();
    await new Promise(requestAnimationFrame); // painted on screen
    samApp.latencies.push(performance.now() - startedAt);
  } catch (error) {
    showError(error.message);
  } finally {
    samApp.busy = false;
  }
}

// Hover preview: the mask a click here would give, one request at a time, never while a click is decoded.
async function hover(point) {
  if (!samApp.image || samApp.busy || samApp.hoverBusy || samApp.everything) return;
  samApp.hoverBusy = true;
  const version = samApp.promptVersion; // a preview asked for before a click is stale after it
  try {
    const response = await postJSON(`/api/images/${samApp.image.id}/predict`, promptBody(point));
    const result = await response.json();
    if (!samApp.busy && version === samApp.promptVersion) paintMasks("hover-canvas", [result.masks[bestIndex(result.masks)]], [HOVER_COLOR]);
  } catch (error) {
    // A failed preview is not worth an error banner: the click will report it.
  } finally {
    samApp.hoverBusy = false;
  }
}

function imagePoint(event) {
  const canvas = $("prompt-canvas");
  const rect = canvas.getBoundingClientRect();
  return [(event.clientX - rect.left) * canvas.width / rect.width,
          (event.clientY - rect.top) * canvas.height / rect.height];
}

let press = null; // {start: [x, y] image pixels, screen: [x, y], negative, dragging}

function onPointerDown(event) {
  if (!samApp.image || (event.button !== 0 && event.button !== 2)) return;
  event.preventDefault();
  press = {start: imagePoint(event), screen: [event.clientX, event.clientY], dragging: false,
           negative: event.button === 2 || event.shiftKey || $("negative").checked};
  $("prompt-canvas").setPointerCapture(event.pointerId);
}

function onPointerMove(event) {
  if (!samApp.image) return;
  if (!press) { hover(imagePoint(event)); return; }
  const moved = Math.hypot(event.clientX - press.screen[0], event.clientY - press.screen[1]);
  if (moved >= DRAG_PIXELS && !press.negative) press.dragging = true;
  if (press.dragging) drawPrompts(boxBetween(press.start, imagePoint(event)));
}

function onPointerUp(event) {
  if (!press) return;
  const startedAt = performance.now();
  const end = imagePoint(event), current = press;
  press = null;
  samApp.promptVersion += 1;
  clearCanvas("hover-canvas");
  if (current.dragging) {
    samApp.box = boxBetween(current.start, end);
  } else {
    samApp.points.push(current.start); samApp.labels.push(current.negative ? 0 : 1);
  }
  drawPrompts();
  predict(startedAt);
}

function boxBetween(a, b) {
  return [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])];
}

async function segmentEverything() {
  if (!samApp.image) return;
  clearError();
  setStatus("Segmenting everything...");
  $("progress").hidden = false; $("progress").removeAttribute("value");
  try {
    const result = await (await postJSON(`/api/images/${samApp.image.id}/everything`, {})).json();
    samApp.points = []; samApp.labels = []; samApp.box = null; drawPrompts();
    samApp.masks = result.masks; samApp.everything = true; samApp.selected = 0;
    paintMasks("mask-canvas", result.masks, result.masks.map((_, i) => randomColor(i)));
    samApp.maskVersion += 1;
    showChoices();
    setStatus(`${result.masks.length} masks.`);
  } catch (error) {
    showError(error.message);
  } finally {
    $("progress").hidden = true; $("progress").value = 0;
  }
}

async function download(format) {
  if (!samApp.image || !samApp.masks.length) { showError("No mask to download yet: click the image first."); return; }
  const masks = samApp.everything ? samApp.masks : [samApp.masks[samApp.selected]];
  try {
    const response = await postJSON(`/api/images/${samApp.image.id}/download?format=${format}`, {masks});
    const disposition = response.headers.get("Content-Disposition") || "";
    const name = (disposition.match(/filename="([^"]+)"/) || [])[1] || `masks.${format === "png" ? "png" : "json"}`;
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = name;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  } catch (error) {
    showError(error.message);
  }
}

async function start() {
  const response = await api("/api/info");
  if (!response.ok) throw new Error(await errorOf(response));
  const info = await response.json();
  $("model").textContent = `model: ${info.model}`;
  if (info.folder_images.length) {
    $("folder-label").hidden = false;
    for (const name of info.folder_images) {
      const option = document.createElement("option");
      option.value = name; option.textContent = name;
      $("folder-select").appendChild(option);
    }
  }
  $("file-input").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (!file) return;
    if (file.size > info.max_bytes) {
      showError(`${file.name}: file of ${file.size} bytes is over the limit of ${info.max_bytes} bytes`);
    } else {
      openImage(`/api/images?name=${encodeURIComponent(file.name)}`, file, file.name);
    }
    event.target.value = ""; // choosing the same file again opens it again
  });
  $("folder-select").addEventListener("change", (event) => {
    const name = event.target.value;
    if (name) openImage(`/api/images?folder_name=${encodeURIComponent(name)}`, null, name);
  });
  const prompts = $("prompt-canvas");
  prompts.addEventListener("pointerdown", onPointerDown);
  prompts.addEventListener("pointermove", onPointerMove);
  prompts.addEventListener("pointerup", onPointerUp);
  prompts.addEventListener("pointerleave", () => { if (!press) clearCanvas("hover-canvas"); });
  prompts.addEventListener("contextmenu", (event) => event.preventDefault());
  $("clear").addEventListener("click", resetPrompts);
  $("multimask").addEventListener("change", () => predict(performance.now()));
  $("everything").addEventListener("click", segmentEverything);
  $("download-png").addEventListener("click", () => download("png"));
  $("download-coco").addEventListener("click", () => download("coco"));
  samApp.ready = true;
}

start().catch((error) => showError(`could not reach the server: ${error.message}`));
