// medvl deep-zoom slide viewer: OpenSeadragon over medvl's tile endpoint, overlays drawn in level-0 image
// coordinates on a canvas that follows every frame, a side panel with scale bar, mpp, magnification and field of
// view, and clicks sent back to Streamlit as image coordinates.
//
// Streamlit's component protocol (the messages streamlit-component-lib sends) is spoken directly: the viewer has no
// React or Arrow data, and the library would bring both into the bundle.
import OpenSeadragon from "openseadragon";

const send = (type, data) => window.parent.postMessage({ isStreamlitMessage: true, type, ...data }, "*");

const state = {
  viewer: null, args: null, sourceKey: null, tissue: null, tissueKey: null, clickId: 0, heat: null, heatKey: null,
  session: Math.random().toString(36).slice(2, 10), selected: null, error: null,
};
state.OpenSeadragon = OpenSeadragon;
window.medvl = state; // read by the browser tests

const NICE = [1, 2, 5];

function tileOrigin(url) {
  const u = new URL(url);
  if (u.hostname === "0.0.0.0" || u.hostname === "[::]") u.hostname = window.location.hostname;
  return u.origin;
}

function dziUrl(args) {
  return `${tileOrigin(args.tile_url)}/v1/slide.dzi?path=${encodeURIComponent(args.path)}` +
    `&token=${encodeURIComponent(args.token)}`;
}

function item() {
  return state.viewer && state.viewer.world.getItemCount() ? state.viewer.world.getItemAt(0) : null;
}

// ------------------------------------------------------------------------------------------ overlays
function sizeCanvas() {
  const canvas = document.getElementById("overlay");
  const box = state.viewer.container.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  canvas.style.width = `${box.width}px`;
  canvas.style.height = `${box.height}px`;
  canvas.width = Math.round(box.width * dpr);
  canvas.height = Math.round(box.height * dpr);
}

function imageTransform(ctx, it, dims) {
  const dpr = window.devicePixelRatio || 1;
  const o = it.imageToViewerElementCoordinates(new OpenSeadragon.Point(0, 0));
  const e = it.imageToViewerElementCoordinates(new OpenSeadragon.Point(dims[0], dims[1]));
  const sx = (e.x - o.x) / dims[0];
  const sy = (e.y - o.y) / dims[1];
  ctx.setTransform(dpr * sx, 0, 0, dpr * sy, dpr * o.x, dpr * o.y);
  return sx;
}

function visibleImageRect(it) {
  const r = it.viewportToImageRectangle(state.viewer.viewport.getBounds(true));
  return [r.x, r.y, r.x + r.width, r.y + r.height];
}

// Tiles on a lattice of their own size (a tiling without overlap) become one small image, a pixel per tile, drawn
// stretched without smoothing: no seams between neighbouring cells and one draw call whatever the tile count.
function latticeImage(tiles) {
  const p = tiles.size;
  const x0 = tiles.coords.reduce((m, c) => Math.min(m, c[0]), Infinity); // no spread: 100k tiles overflow it
  const y0 = tiles.coords.reduce((m, c) => Math.min(m, c[1]), Infinity);
  const cells = tiles.coords.map(([x, y]) => [(x - x0) / p, (y - y0) / p]);
  if (!cells.every(([c, r]) => Math.abs(c - Math.round(c)) < 1e-6 && Math.abs(r - Math.round(r)) < 1e-6)) return null;
  const cols = cells.reduce((m, c) => Math.max(m, Math.round(c[0])), 0) + 1;
  const rows = cells.reduce((m, c) => Math.max(m, Math.round(c[1])), 0) + 1;
  if (cols * rows > 16e6) return null;
  const canvas = document.createElement("canvas");
  canvas.width = cols;
  canvas.height = rows;
  const ctx = canvas.getContext("2d");
  cells.forEach(([c, r], i) => {
    ctx.fillStyle = tiles.colors[i];
    ctx.fillRect(Math.round(c), Math.round(r), 1, 1);
  });
  return { canvas, x0, y0, width: cols * p, height: rows * p };
}

function drawTiles(ctx, tiles, view, scale) {
  const [vx0, vy0, vx1, vy1] = view;
  const p = tiles.size;
  const visible = (x, y) => x + p >= vx0 && x <= vx1 && y + p >= vy0 && y <= vy1;
  if (tiles.colors) {
    ctx.globalAlpha = tiles.opacity;
    if (state.heatKey !== tiles.colors) {
      state.heatKey = tiles.colors;
      state.heat = tiles.coords.length ? latticeImage(tiles) : null;
    }
    if (state.heat) {
      const h = state.heat;
      ctx.drawImage(h.canvas, h.x0, h.y0, h.width, h.height);
    } else {
      tiles.coords.forEach(([x, y], i) => {
        if (!visible(x, y)) return;
        ctx.fillStyle = tiles.colors[i];
        ctx.fillRect(x, y, p, p);
      });
    }
  }
  if (tiles.boundaries) {
    ctx.globalAlpha = 1;
    ctx.strokeStyle = tiles.boundary_color;
    ctx.lineWidth = 1 / scale;
    tiles.coords.forEach(([x, y]) => { if (visible(x, y)) ctx.strokeRect(x, y, p, p); });
  }
}

function drawShapes(ctx, shapes, scale) {
  ctx.globalAlpha = 1;
  for (const shape of shapes) {
    ctx.strokeStyle = shape.color;
    ctx.lineWidth = (shape.width || 2) / scale;
    ctx.beginPath();
    for (const ring of shape.rings) {
      ring.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      if (shape.closed) ctx.closePath();
    }
    ctx.stroke();
    for (const [x, y] of shape.points || []) {
      ctx.beginPath();
      ctx.arc(x, y, 5 / scale, 0, 2 * Math.PI);
      ctx.stroke();
    }
  }
}

function draw() {
  const it = item();
  const canvas = document.getElementById("overlay");
  const ctx = canvas.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const args = state.args;
  if (!it || !args) return;
  const scale = imageTransform(ctx, it, args.dimensions);
  ctx.imageSmoothingEnabled = false; // a mask pixel covers a block of slide pixels exactly
  if (state.tissue && state.tissue.complete && args.tissue) {
    ctx.globalAlpha = args.tissue.opacity;
    ctx.drawImage(state.tissue, 0, 0, args.dimensions[0], args.dimensions[1]);
  }
  if (args.tiles) drawTiles(ctx, args.tiles, visibleImageRect(it), scale);
  if (args.shapes) drawShapes(ctx, args.shapes, scale);
  if (state.selected) {
    const [x0, y0, x1, y1] = state.selected;
    ctx.globalAlpha = 1;
    ctx.strokeStyle = "#00e5ff";
    ctx.lineWidth = 3 / scale;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  }
  ctx.globalAlpha = 1;
}

// ------------------------------------------------------------------------------------------ side panel
function niceLength(um) {
  const exp = Math.floor(Math.log10(um));
  let best = NICE[0] * 10 ** exp;
  for (const n of NICE) if (n * 10 ** exp <= um) best = n * 10 ** exp;
  return best;
}

function formatUm(um) {
  return um >= 1000 ? `${(um / 1000).toFixed(um >= 10000 ? 0 : 1)} mm` : `${um.toFixed(um < 10 ? 1 : 0)} µm`;
}

function updatePanel() {
  const it = item();
  const args = state.args;
  if (!it || !args) return;
  const zoom = it.viewportToImageZoom(state.viewer.viewport.getZoom(true)); // screen px per image px
  const [x0, y0, x1, y1] = visibleImageRect(it);
  const set = (id, text) => { document.getElementById(id).textContent = text; };
  set("zoom", `${zoom >= 1 ? zoom.toFixed(2) : zoom.toPrecision(2)} screen px per slide px`);
  const mpp = args.mpp;
  const bar = document.getElementById("scalebar");
  const magText = (mag) => `magnification ≈ ${mag >= 10 ? mag.toFixed(0) : mag.toFixed(1)}×`;
  if (!mpp) {
    set("mpp", "µm/px unknown: enter it beside the viewer");
    set("mag", args.objective ? magText(args.objective * zoom) : "magnification unknown");
    set("fov", `field of view ${Math.round(x1 - x0)} × ${Math.round(y1 - y0)} px`);
    bar.style.display = "none";
    set("scalelabel", "");
    return;
  }
  const screenMpp = mpp / zoom;
  set("mpp", `${mpp.toFixed(3)} µm/px (level 0) · ${screenMpp.toPrecision(3)} µm per screen px`);
  // the scanner objective scaled by the zoom (as QuPath shows it); without one, 10 µm per screen px counts as 1x
  set("mag", magText(args.objective ? args.objective * zoom : 10 / screenMpp));
  const w = Math.min(x1, args.dimensions[0]) - Math.max(x0, 0);
  const h = Math.min(y1, args.dimensions[1]) - Math.max(y0, 0);
  set("fov", `field of view ${formatUm(Math.max(0, w) * mpp)} × ${formatUm(Math.max(0, h) * mpp)}`);
  const length = niceLength(120 * screenMpp);
  bar.style.display = "block";
  bar.style.width = `${length / screenMpp}px`;
  set("scalelabel", formatUm(length));
}

function updateLegend(args) {
  const legend = document.getElementById("legend");
  const heat = args.legend;
  legend.style.display = heat ? "block" : "none";
  if (!heat) return;
  document.getElementById("legendbar").style.background = `linear-gradient(to right, ${heat.stops.join(", ")})`;
  document.getElementById("legendname").textContent = heat.name;
  document.getElementById("legendmin").textContent = heat.vmin.toFixed(2);
  document.getElementById("legendmax").textContent = heat.vmax.toFixed(2);
}

// ------------------------------------------------------------------------------------------ viewer
function onClick(event) {
  const it = item();
  if (!event.quick || !it) return;
  event.preventDefaultAction = true;
  const p = it.viewerElementToImageCoordinates(event.position);
  const [w, h] = state.args.dimensions;
  if (p.x < 0 || p.y < 0 || p.x >= w || p.y >= h) return;
  const tiles = state.args.tiles;
  if (tiles) {
    const hit = tiles.coords.find(([x, y]) => p.x >= x && p.x < x + tiles.size && p.y >= y && p.y < y + tiles.size);
    state.selected = hit ? [hit[0], hit[1], hit[0] + tiles.size, hit[1] + tiles.size] : state.selected;
  }
  state.clickId += 1;
  send("streamlit:setComponentValue", {
    value: { x: Math.floor(p.x), y: Math.floor(p.y), id: `${state.session}-${state.clickId}` }, dataType: "json",
  });
  state.viewer.forceRedraw();
}

function showError(text) {
  state.error = text;
  const box = document.getElementById("error");
  box.textContent = text;
  box.style.display = text ? "block" : "none";
}

async function explainOpenFailure(url) {
  try {
    const resp = await fetch(url);
    const body = await resp.json();
    showError(`The tile endpoint refused the slide (${resp.status}): ${body.error}`);
  } catch (err) {
    showError(`The tile endpoint cannot be reached (${err.message}); restart the app with medvl app.`);
  }
}

function createViewer() {
  const viewer = OpenSeadragon({
    element: document.getElementById("osd"),
    drawer: "canvas",
    crossOriginPolicy: "Anonymous",
    showNavigationControl: false,
    showNavigator: true,
    navigatorPosition: "BOTTOM_RIGHT",
    maxZoomPixelRatio: 2,
    visibilityRatio: 0.5,
    animationTime: 0.5,
    springStiffness: 10,
    gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: true },
    timeout: 60000,
  });
  const canvas = document.createElement("canvas");
  canvas.id = "overlay";
  canvas.style.cssText = "position:absolute;left:0;top:0;pointer-events:none";
  viewer.canvas.appendChild(canvas);
  viewer.addHandler("update-viewport", () => { draw(); updatePanel(); });
  viewer.addHandler("resize", () => { sizeCanvas(); viewer.forceRedraw(); });
  viewer.addHandler("open", () => { showError(""); sizeCanvas(); viewer.forceRedraw(); });
  viewer.addHandler("open-failed", () => explainOpenFailure(dziUrl(state.args)));
  viewer.addHandler("canvas-click", onClick);
  document.getElementById("zoomin").onclick = () => viewer.viewport.zoomBy(2);
  document.getElementById("zoomout").onclick = () => viewer.viewport.zoomBy(0.5);
  document.getElementById("home").onclick = () => viewer.viewport.goHome();
  document.getElementById("full").onclick = () => {
    const it = item();
    if (it) viewer.viewport.zoomTo(it.imageToViewportZoom(1));
  };
  state.viewer = viewer;
}

function onRender(event) {
  const args = event.data.args;
  state.args = args;
  document.getElementById("osd").style.height = `${args.height}px`; // before the viewer measures its container
  if (!state.viewer) createViewer();
  const key = `${args.path}|${args.tile_url}`;
  if (key !== state.sourceKey) {
    state.sourceKey = key;
    state.selected = null;
    state.viewer.open(dziUrl(args));
  }
  if (args.selected !== undefined) state.selected = args.selected;
  const tissueKey = args.tissue ? args.tissue.png : null;
  if (tissueKey !== state.tissueKey) {
    state.tissueKey = tissueKey;
    state.tissue = null;
    if (tissueKey) {
      const img = new Image();
      img.onload = () => state.viewer.forceRedraw();
      img.src = tissueKey;
      state.tissue = img;
    }
  }
  updateLegend(args);
  state.viewer.forceRedraw();
  send("streamlit:setFrameHeight", { height: args.height + 8 });
}

window.addEventListener("message", (event) => {
  if (event.data && event.data.type === "streamlit:render") onRender(event);
});
send("streamlit:componentReady", { apiVersion: 1 });
