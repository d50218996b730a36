"""The viewers in Chromium: deep zoom to full resolution and back, overlays on the tissue at three zoom levels,
a clicked tile's classes, CT planes following the slice slider and the window presets. Screenshots go to
tests/artifacts/."""

from io import BytesIO

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from tests.apps.conftest import FIDUCIALS

pytestmark = pytest.mark.browser

SCRIPT_DONE = "!document.querySelector('[data-testid=\"stStatusWidget\"]')"
IMAGES_LOADED = "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
#: the viewer shows its slide and every tile the current view needs has been drawn
VIEW_READY = """() => { const m = window.medvl, v = m && m.viewer;
  if (!v || !v.world.getItemCount()) return false;
  const it = v.world.getItemAt(0);
  return it.getFullyLoaded() && !v.world.needsDraw(); }"""
#: level-0 point -> position in the viewer element (only to pair a found square with its fiducial, and to click)
TO_SCREEN = """(pts) => { const m = window.medvl, it = m.viewer.world.getItemAt(0);
  return pts.map(([x, y]) => { const p = it.imageToViewerElementCoordinates(new m.OpenSeadragon.Point(x, y));
                               return [p.x, p.y]; }); }"""


def image_zoom(frame) -> float:
    return frame.evaluate("(() => { const v = window.medvl.viewer, it = v.world.getItemAt(0);"
                          " return it.viewportToImageZoom(v.viewport.getZoom(true)); })()")


def view_center(frame) -> tuple[float, float]:
    return tuple(frame.evaluate("(() => { const v = window.medvl.viewer, it = v.world.getItemAt(0);"
                                " const c = it.viewportToImageCoordinates(v.viewport.getCenter(true));"
                                " return [c.x, c.y]; })()"))


def open_viewer(page, url: str):
    """Open the slide viewer and wait until the deep-zoom view has drawn the whole slide; returns its frame."""
    page.goto(f"{url}/Slide_viewer", wait_until="domcontentloaded", timeout=60_000)
    page.get_by_text("Selected tile").first.wait_for(timeout=240_000)
    page.wait_for_function(SCRIPT_DONE, timeout=120_000)
    frame = page.wait_for_selector("iframe[title*='deepzoom']", timeout=60_000).content_frame()
    settle(frame)
    return frame


def settle(frame, timeout: int = 60_000) -> None:
    frame.wait_for_timeout(300)  # let the viewer run an update for the new view before asking
    frame.wait_for_function(VIEW_READY, timeout=timeout)
    frame.wait_for_timeout(400)  # the last frame after the final tile


def shot(frame, overlay: bool) -> np.ndarray:
    """Screenshot of the view (navigator hidden), with or without the overlay canvas."""
    frame.evaluate(f"document.getElementById('overlay').style.visibility = '{'visible' if overlay else 'hidden'}';"
                   "window.medvl.viewer.navigator.element.style.visibility = 'hidden';")
    return np.asarray(Image.open(BytesIO(frame.locator("#osd").screenshot())).convert("RGB")).astype(int)


def fiducial_boxes(pixels: np.ndarray, expected_px: float) -> list[tuple[int, int, int, int]]:
    """Screen boxes (x0, y0, x1, y1; x1/y1 exclusive) of the whole black squares in a screenshot."""
    labels, _ = ndimage.label(pixels.max(axis=2) < 60)
    h, w = labels.shape
    found = []
    for sl in ndimage.find_objects(labels):
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        if 2 < x0 and x1 < w - 3 and 2 < y0 and y1 < h - 3 and abs((x1 - x0) - expected_px) < 0.25 * expected_px + 2 \
                and abs((y1 - y0) - expected_px) < 0.25 * expected_px + 2:
            found.append((x0, y0, x1, y1))
    return found


def fit_mapping(frame, boxes) -> tuple[np.ndarray, np.ndarray, float]:
    """Level-0 -> screenshot pixel mapping fitted on the fiducials' pixels (the tiles), per axis ``a * v + b``; the
    viewer's own transform only pairs each found square with its fiducial."""
    centres = frame.evaluate(TO_SCREEN, [[(f[0] + f[2]) / 2, (f[1] + f[3]) / 2] for f in FIDUCIALS])
    pairs = []
    for box in boxes:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        k = int(np.argmin([(cx - px) ** 2 + (cy - py) ** 2 for px, py in centres]))
        pairs.append((FIDUCIALS[k], box))
    fits, residual = [], 0.0
    for axis in (0, 1):
        level0 = np.array([v for f, _ in pairs for v in (f[axis], f[axis + 2])], float)
        screen = np.array([v for _, b in pairs for v in (b[axis], b[axis + 2])], float)
        a, b = np.polyfit(level0, screen, 1)
        residual = max(residual, float(np.abs(a * level0 + b - screen).max()))
        fits.append((a, b))
    return np.array([f[0] for f in fits]), np.array([f[1] for f in fits]), residual


def set_view(frame, zoom: float, centre: tuple[float, float]) -> None:
    frame.evaluate("""([z, x, y]) => { const v = window.medvl.viewer, it = v.world.getItemAt(0);
        v.viewport.zoomTo(it.imageToViewportZoom(z), null, true);
        v.viewport.panTo(it.imageToViewportCoordinates(x, y), true); }""", [zoom, *centre])
    settle(frame)


def check_alignment(frame, zoom: float) -> dict:
    """At the current view: annotation outlines trace the fiducial squares of the tiles, heatmap cells sit where
    their tiles are (colour inside, colour change at the shared edge)."""
    plain, over = shot(frame, overlay=False), shot(frame, overlay=True)
    boxes = fiducial_boxes(plain, 48 * zoom)
    assert boxes, f"no fiducial in view at zoom {zoom}"  # each square gives both edges on both axes
    scale, offset, residual = fit_mapping(frame, boxes)
    assert abs(scale[0] - zoom) < 0.03 * zoom and residual < 2.0  # the tiles themselves are drawn at this zoom
    yellow = (np.abs(over[..., 0] - 255) <= 20) & (np.abs(over[..., 1] - 230) <= 20) & (over[..., 2] <= 45)
    for x0, y0, x1, y1 in boxes:  # the outline is 2 screen px centred on the square's edge
        ys, xs = np.nonzero(yellow[max(0, y0 - 6):y1 + 6, max(0, x0 - 6):x1 + 6])
        assert len(xs), "no outline around a fiducial"
        got = (xs.min() + max(0, x0 - 6), ys.min() + max(0, y0 - 6), xs.max() + max(0, x0 - 6) + 1,
               ys.max() + max(0, y0 - 6) + 1)
        assert all(abs(g - e) <= 2.0 for g, e in zip(got, (x0 - 1, y0 - 1, x1 + 1, y1 + 1), strict=True)), (got, x0)
    return heat_cells(frame, over, scale, offset, boxes)


def heat_cells(frame, over, scale, offset, boxes) -> dict:
    tiles = frame.evaluate("window.medvl.args.tiles")
    size, h, w = tiles["size"], over.shape[0], over.shape[1]
    colours = [np.array([int(c[i:i + 2], 16) for i in (1, 3, 5)]) for c in tiles["colors"]]
    to_px = lambda x, y: (scale[0] * x + offset[0], scale[1] * y + offset[1])  # noqa: E731
    # every fiducial (also those only partly in view) with its outline, and the selected tile's outline
    marks = [(*to_px(f[0], f[1]), *to_px(f[2], f[3])) for f in FIDUCIALS]
    selected = frame.evaluate("window.medvl.selected")
    near_fiducial = lambda px, py: any(b[0] - 5 <= px <= b[2] + 5 and b[1] - 5 <= py <= b[3] + 5  # noqa: E731
                                       for b in marks)
    inside = edges = 0
    index = {tuple(c): i for i, c in enumerate(tiles["coords"])}
    for i, (x, y) in enumerate(tiles["coords"]):
        for fx, fy in ((0.3, 0.3), (0.7, 0.3), (0.3, 0.7), (0.7, 0.7)):
            px, py = to_px(x + fx * size, y + fy * size)
            if 3 <= px < w - 3 and 3 <= py < h - 3 and not near_fiducial(px, py):  # the view's border aside
                assert np.abs(over[int(py), int(px)] - colours[i]).max() <= 6, (i, fx, fy)
                inside += 1
        j = index.get((x + size, y))  # the shared edge with the right-hand neighbour
        if j is None or np.abs(colours[i] - colours[j]).max() < 40 or selected and selected[:2] in ([x, y],
                                                                                                   [x + size, y]):
            continue
        for fy in (0.5, 0.35, 0.65):
            (ex, ey), (cx, _), (nx, _) = to_px(x + size, y + fy * size), to_px(x + size / 2, 0), to_px(
                x + 1.5 * size, 0)
            if not (3 <= cx and nx < w - 3 and 3 <= ey < h - 3) or near_fiducial(ex, ey):
                continue
            row = over[int(ey), int(cx):int(nx)]
            closer = np.abs(row - colours[j]).sum(axis=1) < np.abs(row - colours[i]).sum(axis=1)
            closer &= [not near_fiducial(int(cx) + k, ey) for k in range(len(row))]  # outlines crossing the line
            assert abs(int(cx) + int(np.argmax(closer)) - ex) <= 1.5, (i, j, int(cx) + int(np.argmax(closer)), ex)
            edges += 1
            break
    return {"inside": inside, "edges": edges}


def test_overlays_stay_on_the_tiles_at_three_zooms(browser, viewer_app, artifacts):
    page = browser.new_page(viewport={"width": 1300, "height": 1300})
    try:
        frame = open_viewer(page, viewer_app.url)
        page.get_by_role("slider", name="Overlay opacity").focus()
        page.keyboard.press("End")  # opacity 1: a heatmap cell shows its own colour only
        frame.wait_for_function("window.medvl.args.tiles && window.medvl.args.tiles.opacity === 1", timeout=120_000)
        page.wait_for_function(SCRIPT_DONE, timeout=120_000)
        tiles = frame.evaluate("window.medvl.args.tiles")
        corner = tiles["coords"][len(tiles["coords"]) // 2]  # a cell corner in the middle of the tissue
        checked = {}
        for name, zoom in (("whole", None), ("mid", 0.8), ("close", 2.0)):
            if zoom is not None:
                set_view(frame, zoom, (corner[0], corner[1]))
            z = image_zoom(frame)
            checked[name] = check_alignment(frame, z)
            Image.fromarray(shot(frame, overlay=True).astype(np.uint8)).save(artifacts / f"viewer_overlay_{name}.png")
        assert all(c["inside"] >= 4 and c["edges"] >= 1 for c in checked.values()), checked
    finally:
        page.close()


def test_clicking_a_tile_shows_its_classes(browser, viewer_app, artifacts):
    page = browser.new_page(viewport={"width": 1300, "height": 1300})
    try:
        frame = open_viewer(page, viewer_app.url)
        first = page.get_by_text("Tile ", exact=False).filter(has_text="level-0 x").first.inner_text()
        tiles = frame.evaluate("window.medvl.args.tiles")
        pick = next(i for i, _ in enumerate(tiles["coords"]) if not first.startswith(f"Tile {i}:"))
        x, y = tiles["coords"][pick]
        (px, py), = frame.evaluate(TO_SCREEN, [[x + 0.5 * tiles["size"], y + 0.5 * tiles["size"]]])
        osd = frame.locator("#osd").bounding_box()  # page coordinates of the viewer element
        page.mouse.click(osd["x"] + px, osd["y"] + py)
        page.get_by_text(f"Tile {pick}: level-0 x {int(x)}", exact=False).first.wait_for(timeout=120_000)
        page.wait_for_function(SCRIPT_DONE, timeout=120_000)
        body = page.inner_text("body")
        assert "probability" in body and "Ancestor path" in body and "Nearest cases to the tile" in body
        assert frame.evaluate("window.medvl.selected") == [x, y, x + tiles["size"], y + tiles["size"]]
        page.screenshot(path=str(artifacts / "viewer_clicked_tile.png"), full_page=True)
    finally:
        page.close()


def test_deep_zoom_to_full_resolution_and_back(browser, served_app, artifacts):
    page = browser.new_page(viewport={"width": 1300, "height": 1100})
    responses = []
    page.on("response", lambda r: responses.append((r.status, r.url)) if "/slide_files/" in r.url else None)
    try:
        frame = open_viewer(page, served_app.url)
        home, start = image_zoom(frame), view_center(frame)
        assert home < 0.3  # the whole 2220 x 2967 slide fits the view
        box = page.locator("iframe[title*='deepzoom']").bounding_box()
        cx, cy = box["x"] + 300, box["y"] + 300
        page.mouse.move(cx, cy)
        for _ in range(40):  # scroll-wheel zoom, as a user does
            page.mouse.wheel(0, -200)
            page.wait_for_timeout(60)
            if image_zoom(frame) >= 1.0:
                break
        settle(frame)
        assert image_zoom(frame) >= 1.0
        assert "magnification ≈ 2" in frame.inner_text("#mag")  # 20x objective at one slide pixel per screen pixel
        top = [u for s, u in responses if "/slide_files/12/" in u]
        assert top and all(s == 200 for s, _ in responses), responses[-3:]
        frame.locator("#osd").screenshot(path=str(artifacts / "viewer_full_resolution.png"))
        before = view_center(frame)
        page.mouse.move(cx, cy)
        page.mouse.down()
        page.mouse.move(cx - 200, cy - 120, steps=8)
        page.mouse.up()
        settle(frame)
        after, z = view_center(frame), image_zoom(frame)
        assert abs((after[0] - before[0]) * z - 200) < 20 and abs((after[1] - before[1]) * z - 120) < 20  # panned
        frame.click("#home")
        settle(frame)
        assert abs(image_zoom(frame) - home) < 0.02 * home
        assert np.allclose(view_center(frame), start, atol=5)
        frame.locator("#osd").screenshot(path=str(artifacts / "viewer_home.png"))
    finally:
        page.close()


def test_ct_planes_follow_slice_slider_and_presets(browser, served_app, artifacts):
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    try:
        page.goto(f"{served_app.url}/CT_viewer", wait_until="domcontentloaded", timeout=60_000)
        page.get_by_text("axial 16/30").first.wait_for(timeout=120_000)
        page.wait_for_function(SCRIPT_DONE, timeout=60_000)
        axial = page.locator("[data-testid='stImage'] img").first

        def pixels():
            page.wait_for_function(SCRIPT_DONE, timeout=60_000)
            page.wait_for_function(IMAGES_LOADED, timeout=60_000)
            shot = None
            for _ in range(20):  # until the image has stopped changing size (Streamlit swaps it in while laying out)
                page.wait_for_timeout(300)
                previous, shot = shot, np.asarray(Image.open(BytesIO(axial.screenshot())).convert("L")).astype(int)
                if previous is not None and previous.shape == shot.shape:
                    break
            return shot

        first = pixels()
        page.get_by_role("slider", name="axial slice").focus()
        for _ in range(4):
            page.keyboard.press("ArrowRight")
        page.get_by_text("axial 20/30").first.wait_for(timeout=60_000)
        moved = pixels()
        assert np.abs(moved - first).mean() > 2  # another slice
        page.screenshot(path=str(artifacts / "ct_slice_20.png"), full_page=True)
        page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").filter(has_text="Preset").click()
        page.get_by_role("option", name="lung").click()
        page.get_by_text("level -600 HU, width 1500 HU").first.wait_for(timeout=60_000)
        lung = pixels()
        assert np.abs(lung - moved).mean() > 5  # the lung window shows the same slice differently
        page.screenshot(path=str(artifacts / "ct_lung_window.png"), full_page=True)
    finally:
        page.close()
