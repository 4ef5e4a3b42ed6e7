"""Procedural synthetic photos of the nine species of the Large-Scale Fish Dataset.

The demo registry needs a classifier that can be trained offline in minutes, so
instead of the real photos we draw look-alikes: each species has its own body
shape, palette and markings, and every photo gets a random pose, scale,
position, lighting and background (blue trays, paper, ice, wood, steel, like
the real dataset). Similar species share palettes on purpose (the two red
mullets, the silver fish), so a classifier has to look at shape and markings,
not just at the average colour.

Everything is drawn with Pillow's ImageDraw on a canvas in the fish's own frame
(nose left, back up) and then rotated into place; numpy does the gradients,
backgrounds, lighting and noise. One 224 px photo takes a few milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SPECIES: tuple[str, ...] = (
    "Black Sea Sprat",
    "Gilt-Head Bream",
    "Horse Mackerel",
    "Red Mullet",
    "Red Sea Bream",
    "Sea Bass",
    "Shrimp",
    "Striped Red Mullet",
    "Trout",
)

Colour = tuple[float, float, float]
Point = tuple[float, float]


@dataclass(frozen=True)
class _Look:
    """Shape and palette ranges of one fish species.

    Lengths are fractions of the image side. Each colour is drawn between its
    two anchors, so overlapping anchors make species share colours.
    """

    length: tuple[float, float]  # nose to tail tip
    depth: tuple[float, float]  # body depth / body length
    back: tuple[float, float]  # (p, q) of the back profile, see _profile
    belly: tuple[float, float]  # (p, q) of the belly profile
    back_colour: tuple[Colour, Colour]
    belly_colour: tuple[Colour, Colour]
    fin_colour: tuple[Colour, Colour]
    tail: str  # "fork", "notch" or "square"
    tail_len: float  # tail length / body length
    eye: float  # eye radius / body depth


_SILVER_BELLY = ((205.0, 210.0, 215.0), (240.0, 240.0, 235.0))
_RED_BACK = ((185.0, 55.0, 50.0), (230.0, 120.0, 95.0))
_RED_BELLY = ((225.0, 150.0, 135.0), (250.0, 215.0, 200.0))

_LOOKS: dict[int, _Look] = {
    0: _Look(  # Black Sea Sprat: small, slender, blue-green back
        length=(0.55, 0.8),
        depth=(0.15, 0.19),
        back=(0.9, 0.8),
        belly=(0.9, 0.8),
        back_colour=((40.0, 80.0, 95.0), (90.0, 120.0, 130.0)),
        belly_colour=_SILVER_BELLY,
        fin_colour=((150.0, 160.0, 165.0), (190.0, 195.0, 195.0)),
        tail="fork",
        tail_len=0.22,
        eye=0.3,
    ),
    1: _Look(  # Gilt-Head Bream: deep oval silver body, gold forehead band
        length=(0.65, 0.9),
        depth=(0.4, 0.48),
        back=(0.8, 0.7),
        belly=(0.9, 0.9),
        back_colour=((110.0, 120.0, 130.0), (160.0, 165.0, 170.0)),
        belly_colour=_SILVER_BELLY,
        fin_colour=((100.0, 105.0, 115.0), (150.0, 150.0, 160.0)),
        tail="notch",
        tail_len=0.24,
        eye=0.18,
    ),
    2: _Look(  # Horse Mackerel: torpedo, big eye, scute lateral line
        length=(0.65, 0.92),
        depth=(0.22, 0.26),
        back=(0.85, 0.75),
        belly=(0.9, 0.8),
        back_colour=((80.0, 100.0, 105.0), (140.0, 150.0, 145.0)),
        belly_colour=_SILVER_BELLY,
        fin_colour=((170.0, 165.0, 120.0), (210.0, 200.0, 150.0)),
        tail="fork",
        tail_len=0.24,
        eye=0.24,
    ),
    3: _Look(  # Red Mullet: steep head, plain red, barbels
        length=(0.62, 0.9),
        depth=(0.24, 0.29),
        back=(0.8, 0.45),
        belly=(1.0, 0.8),
        back_colour=_RED_BACK,
        belly_colour=_RED_BELLY,
        fin_colour=((220.0, 150.0, 130.0), (245.0, 190.0, 170.0)),
        tail="fork",
        tail_len=0.22,
        eye=0.2,
    ),
    4: _Look(  # Red Sea Bream: deep pink-red body with blue dots
        length=(0.65, 0.92),
        depth=(0.38, 0.45),
        back=(0.75, 0.65),
        belly=(0.95, 0.9),
        back_colour=((195.0, 75.0, 75.0), (235.0, 135.0, 125.0)),
        belly_colour=_RED_BELLY,
        fin_colour=((200.0, 90.0, 90.0), (235.0, 140.0, 130.0)),
        tail="notch",
        tail_len=0.24,
        eye=0.18,
    ),
    5: _Look(  # Sea Bass: silver gradient, two dorsal fins, big mouth
        length=(0.7, 0.95),
        depth=(0.24, 0.28),
        back=(0.85, 0.8),
        belly=(0.95, 0.85),
        back_colour=((60.0, 70.0, 85.0), (120.0, 130.0, 140.0)),
        belly_colour=_SILVER_BELLY,
        fin_colour=((90.0, 95.0, 105.0), (140.0, 145.0, 150.0)),
        tail="notch",
        tail_len=0.2,
        eye=0.15,
    ),
    7: _Look(  # Striped Red Mullet: red mullet body and palette, plus yellow stripes
        length=(0.62, 0.9),
        depth=(0.24, 0.29),
        back=(0.8, 0.45),
        belly=(1.0, 0.8),
        back_colour=_RED_BACK,
        belly_colour=_RED_BELLY,
        fin_colour=((220.0, 150.0, 130.0), (245.0, 190.0, 170.0)),
        tail="fork",
        tail_len=0.22,
        eye=0.2,
    ),
    8: _Look(  # Trout: olive back, pink band, black spots, square tail
        length=(0.7, 0.95),
        depth=(0.22, 0.26),
        back=(0.85, 0.8),
        belly=(0.95, 0.85),
        back_colour=((85.0, 100.0, 70.0), (135.0, 140.0, 100.0)),
        belly_colour=_SILVER_BELLY,
        fin_colour=((120.0, 120.0, 95.0), (165.0, 160.0, 130.0)),
        tail="square",
        tail_len=0.18,
        eye=0.14,
    ),
}

_SHRIMP = 6


def _mix(anchors: tuple[Colour, Colour], rng: np.random.Generator, jitter: float = 8.0) -> np.ndarray:
    """A colour between two anchors plus a little per-channel jitter."""
    a, b = np.asarray(anchors[0]), np.asarray(anchors[1])
    c = a + (b - a) * rng.random() + rng.normal(0.0, jitter, 3)
    return np.clip(c, 0, 255).astype(np.float32)


def _rgb(c: np.ndarray | Colour) -> tuple[int, int, int]:
    """ImageDraw wants integer RGB tuples."""
    return (int(c[0]), int(c[1]), int(c[2]))


def _profile(t: np.ndarray, p: float, q: float, peduncle: float) -> np.ndarray:
    """Half-height of a body side along t in [0, 1], normalised to a maximum of 1.

    p < 1 moves the deepest point towards the head, q < 1 blunts the head;
    the body never tapers below `peduncle` at the tail end.
    """
    g = (1.0 - peduncle) * np.sin(np.pi * t**p) ** q + peduncle * t**2
    return g / g.max()


@dataclass
class _Body:
    """A fish body outline in canvas pixels: nose at x0, back above cy."""

    x0: float
    length: float
    cy: float
    t: np.ndarray
    top: np.ndarray
    bottom: np.ndarray

    def at(self, t: float, v: float) -> Point:
        """Point at fraction t along the body, v from -1 (back edge) to 1 (belly edge)."""
        top = float(np.interp(t, self.t, self.top))
        bottom = float(np.interp(t, self.t, self.bottom))
        return self.x0 + t * self.length, (top + bottom) / 2 + v * (bottom - top) / 2

    def outline(self) -> list[Point]:
        """Closed body polygon: along the back, then back along the belly."""
        xs = self.x0 + self.t * self.length
        upper = list(zip(xs.tolist(), self.top.tolist(), strict=True))
        lower = list(zip(xs[::-1].tolist(), self.bottom[::-1].tolist(), strict=True))
        return upper + lower

    @property
    def depth(self) -> float:
        return float((self.bottom - self.top).max())


def _make_body(look: _Look, rng: np.random.Generator, size: int) -> tuple[_Body, float]:
    """Sample a body outline for a species; returns it with the tail length in pixels."""
    total = rng.uniform(*look.length) * size
    length = total / (1.0 + look.tail_len)
    depth = rng.uniform(*look.depth) * length
    t = np.linspace(0.0, 1.0, 28)
    # A random share of the depth sits above the midline: backs are usually higher.
    up = rng.uniform(0.5, 0.6) * depth
    peduncle = rng.uniform(0.18, 0.26)
    top_g = _profile(t, look.back[0] * rng.uniform(0.9, 1.1), look.back[1], peduncle)
    bottom_g = _profile(t, look.belly[0] * rng.uniform(0.9, 1.1), look.belly[1], peduncle)
    cy = size / 2 + (up - (depth - up)) / 2
    x0 = (size - total) / 2
    body = _Body(x0, length, cy, t, cy - up * top_g, cy + (depth - up) * bottom_g)
    return body, total - length


def _tail(body: _Body, kind: str, tail_len: float, rng: np.random.Generator) -> list[Point]:
    """Caudal fin polygon attached to the body's end."""
    xe = body.x0 + body.length
    y_top, y_bot = body.top[-1], body.bottom[-1]
    mid = (y_top + y_bot) / 2
    span = body.depth * rng.uniform(0.45, 0.6)
    x1 = xe + tail_len
    if kind == "fork":
        notch = xe + tail_len * rng.uniform(0.35, 0.5)
    elif kind == "notch":
        notch = xe + tail_len * rng.uniform(0.65, 0.8)
    else:
        notch = x1 - tail_len * 0.05
    inset = 0.0 if kind == "square" else tail_len * 0.15
    return [
        (xe - 2, y_top),
        (x1, mid - span),
        (x1 - inset, mid - span * 0.55),
        (notch, mid),
        (x1 - inset, mid + span * 0.55),
        (x1, mid + span),
        (xe - 2, y_bot),
    ]


def _fin_on_edge(body: _Body, t0: float, t1: float, height: float, v: float, spikes: int = 0) -> list[Point]:
    """A fin standing on the back (v=-1) or belly (v=1) between t0 and t1, swept back.

    With spikes > 0 the fin edge is jagged, like a spiny dorsal fin.
    """
    base0, base1 = body.at(t0, v), body.at(t1, v)
    sign = -1.0 if v < 0 else 1.0
    apex = (base0[0] + (base1[0] - base0[0]) * 0.55, base0[1] + sign * height)
    if spikes <= 0:
        return [base0, apex, (base1[0], base1[1] + sign * height * 0.25), base1]
    pts = [base0]
    for i in range(spikes):
        f = (i + 0.5) / spikes
        x = base0[0] + (base1[0] - base0[0]) * f
        y_base = base0[1] + (base1[1] - base0[1]) * f
        h = height * (1.0 - 0.6 * f)
        pts.append((x, y_base + sign * h))
        pts.append((x + (base1[0] - base0[0]) / spikes * 0.5, y_base + sign * h * 0.45))
    pts.append(base1)
    return pts


def _gradient(body: _Body, back: np.ndarray, belly: np.ndarray, size: int) -> np.ndarray:
    """Per-row back-to-belly colour ramp over the whole canvas (float32, size x 1 x 3)."""
    y = np.arange(size, dtype=np.float32)
    w = np.clip((y - body.top.min()) / max(body.depth, 1.0), 0.0, 1.0) ** 1.3
    return back[None, :] * (1 - w[:, None]) + belly[None, :] * w[:, None]


def _band(ramp: np.ndarray, body: _Body, v: float, width: float, colour: np.ndarray, strength: float) -> None:
    """Blend a soft horizontal band into a row ramp at body position v (in place)."""
    _, yc = body.at(0.5, v)
    y = np.arange(ramp.shape[0], dtype=np.float32)
    w = np.exp(-(((y - yc) / max(width * body.depth, 1.0)) ** 2)) * strength
    ramp[:] = ramp * (1 - w[:, None]) + colour[None, :] * w[:, None]


def _eye(draw_c: ImageDraw.ImageDraw, body: _Body, radius: float, t: float = 0.09, v: float = -0.25) -> None:
    """Eye: light ring with a dark pupil."""
    x, y = body.at(t, v)
    r = max(radius, 1.5)
    draw_c.ellipse((x - r, y - r, x + r, y + r), fill=(215, 210, 190))
    r2 = r * 0.6
    draw_c.ellipse((x - r2, y - r2, x + r2, y + r2), fill=(15, 15, 20))


def _gill(
    draw_c: ImageDraw.ImageDraw, body: _Body, t: float, colour: tuple[int, int, int], width: int
) -> None:
    """Gill cover edge as an arc from back to belly."""
    pts = [body.at(t + 0.03 * math.cos(a), math.sin(a) * 0.85) for a in np.linspace(-1.2, 1.2, 7)]
    draw_c.line(pts, fill=colour, width=width)


class _Deferred:
    """Records ImageDraw calls to replay later on both the colour and the alpha layer.

    Marks such as barbels and the bream's gold band stick out of the body
    outline, so they must be drawn after the body is pasted, and must also
    make the alpha mask opaque where they are.
    """

    def __init__(self) -> None:
        self._calls: list[tuple[str, tuple, dict]] = []

    def line(self, *args, **kwargs) -> None:
        self._calls.append(("line", args, kwargs))

    def ellipse(self, *args, **kwargs) -> None:
        self._calls.append(("ellipse", args, kwargs))

    def polygon(self, *args, **kwargs) -> None:
        self._calls.append(("polygon", args, kwargs))

    def replay(self, colour: ImageDraw.ImageDraw, alpha: ImageDraw.ImageDraw) -> None:
        for name, args, kwargs in self._calls:
            getattr(colour, name)(*args, **kwargs)
            getattr(alpha, name)(*args, **{**kwargs, "fill": 255})


# --- per-species markings -------------------------------------------------------------
# Each takes (texture draw, detail draw, body, rng, size, back colour) and adds what
# tells the species apart. The texture layer is clipped to the body; the detail layer
# is drawn on top of the finished fish.

Marker = Callable[[ImageDraw.ImageDraw, _Deferred, _Body, np.random.Generator, int, np.ndarray], None]


def _mark_sprat(tex, det, body, rng, size, back) -> None:
    # A thin silver line along the flank is all the sprat has.
    pts = [body.at(t, -0.05) for t in np.linspace(0.15, 0.95, 8)]
    tex.line(pts, fill=(200, 205, 210), width=max(1, size // 150))


def _mark_bream(tex, det, body, rng, size, back) -> None:
    # Thin dark lengthwise lines, dark blotch on the gill cover, gold band between the eyes.
    w = max(1, size // 220)
    for v in np.linspace(-0.6, 0.6, 6):
        tex.line([body.at(t, v) for t in np.linspace(0.2, 0.95, 6)], fill=_rgb(back * 0.75), width=w)
    x, y = body.at(0.24, -0.45)
    r = body.depth * 0.07
    det.ellipse((x - r, y - r, x + r, y + r), fill=(40, 35, 40))
    gold = (225, 180, 60) if rng.random() < 0.5 else (235, 200, 90)
    det.line(
        [body.at(0.03, -0.45), body.at(0.1, -0.75), body.at(0.14, -0.95)], fill=gold, width=max(2, size // 45)
    )


def _mark_mackerel(tex, det, body, rng, size, back) -> None:
    # Row of bony scutes along a lateral line that drops sharply half way, dark gill spot.
    ts = np.linspace(0.22, 0.98, 22)
    vs = np.where(ts < 0.5, -0.55, np.interp(ts, [0.5, 0.62, 1.0], [-0.55, -0.05, 0.0]))
    pts = [body.at(float(t), float(v)) for t, v in zip(ts, vs, strict=True)]
    tex.line(pts, fill=(45, 50, 55), width=max(2, size // 60))
    for x, y in pts[::2]:
        r = max(1.0, size / 220)
        tex.rectangle((x - r, y - 2 * r, x + r, y + 2 * r), fill=(200, 205, 200))
    x, y = body.at(0.22, -0.5)
    r = body.depth * 0.08
    det.ellipse((x - r, y - r, x + r, y + r), fill=(25, 25, 30))


def _barbels(det, body, size) -> None:
    """The two chin barbels of the mullets."""
    x, y = body.at(0.05, 0.6)
    ln = body.length * 0.13
    for dy in (0.0, body.depth * 0.06):
        det.line(
            [(x, y + dy), (x + ln * 0.5, y + dy + ln * 0.25), (x + ln, y + dy + ln * 0.2)],
            fill=(235, 215, 190),
            width=max(1, size // 130),
        )


def _mark_red_mullet(tex, det, body, rng, size, back) -> None:
    # Plain body: just faint scale rows and the barbels.
    for v in np.linspace(-0.4, 0.4, 3):
        tex.line([body.at(t, v) for t in np.linspace(0.25, 0.95, 5)], fill=_rgb(back * 0.92), width=1)
    _barbels(det, body, size)


def _mark_sea_bream(tex, det, body, rng, size, back) -> None:
    # Small bright blue dots scattered over the upper flank.
    r = max(1.0, size / 110)
    for _ in range(int(rng.integers(25, 45))):
        x, y = body.at(rng.uniform(0.18, 0.9), rng.uniform(-0.85, 0.2))
        tex.ellipse((x - r, y - r, x + r, y + r), fill=(90, 170, 230))


def _mark_bass(tex, det, body, rng, size, back) -> None:
    # Dark lateral line and the bass's long mouth and dark gill spot.
    tex.line(
        [body.at(t, -0.25) for t in np.linspace(0.22, 0.97, 8)],
        fill=_rgb(back * 0.6),
        width=max(1, size // 110),
    )
    x, y = body.at(0.21, -0.35)
    r = body.depth * 0.08
    det.ellipse((x - r, y - r * 1.5, x + r, y + r * 1.5), fill=(35, 38, 45))
    det.line([body.at(0.0, 0.1), body.at(0.11, 0.2)], fill=(50, 45, 50), width=max(1, size // 100))


def _mark_striped_mullet(tex, det, body, rng, size, back) -> None:
    # Two or three yellow lengthwise stripes on the flank; otherwise a red mullet.
    yellow = (235, 200, 70) if rng.random() < 0.5 else (220, 170, 60)
    for v in (-0.35, 0.0, 0.3)[: int(rng.integers(2, 4))]:
        tex.line([body.at(t, v) for t in np.linspace(0.15, 0.97, 8)], fill=yellow, width=max(2, size // 45))
    tex.line(
        [body.at(t, -0.65) for t in np.linspace(0.12, 0.9, 7)],
        fill=_rgb(back * 0.6),
        width=max(2, size // 70),
    )
    _barbels(det, body, size)


def _mark_trout(tex, det, body, rng, size, back) -> None:
    # Black spots scattered over back, flank and tail.
    r = max(1.0, size / 120)
    for _ in range(int(rng.integers(35, 60))):
        x, y = body.at(rng.uniform(0.15, 1.0), rng.uniform(-0.95, 0.35))
        tex.ellipse((x - r, y - r, x + r, y + r), fill=(25, 25, 20))


_MARKERS: dict[int, Marker] = {
    0: _mark_sprat,
    1: _mark_bream,
    2: _mark_mackerel,
    3: _mark_red_mullet,
    4: _mark_sea_bream,
    5: _mark_bass,
    7: _mark_striped_mullet,
    8: _mark_trout,
}


def _fins(
    draw_a,
    draw_f,
    body: _Body,
    species: int,
    rng: np.random.Generator,
    tail_len: float,
    kind: str,
    size: int,
    fin: np.ndarray,
) -> None:
    """Draw tail, dorsal, anal and pectoral fins onto the alpha and fin-colour layers."""
    d = body.depth
    fins = [_tail(body, kind, tail_len, rng)]
    if species == 5:  # sea bass: spiny first dorsal, separate soft second dorsal
        fins.append(_fin_on_edge(body, 0.28, 0.5, d * 0.45, -1, spikes=7))
        fins.append(_fin_on_edge(body, 0.56, 0.78, d * 0.3, -1))
    elif species in (3, 7):  # mullets: two short dorsals
        fins.append(_fin_on_edge(body, 0.26, 0.42, d * 0.35, -1, spikes=5))
        fins.append(_fin_on_edge(body, 0.6, 0.74, d * 0.22, -1))
    elif species in (1, 4):  # breams: one long spiny dorsal
        fins.append(_fin_on_edge(body, 0.3, 0.85, d * 0.18, -1, spikes=9))
    else:
        fins.append(_fin_on_edge(body, 0.38, 0.6, d * 0.35, -1))
    fins.append(_fin_on_edge(body, 0.62, 0.82, d * 0.22, 1))
    alpha = int(rng.integers(190, 240))
    for poly in fins:
        draw_a.polygon(poly, fill=alpha)
        draw_f.polygon(poly, fill=_rgb(fin))
    if species == 7:  # striped red mullet: dark bands on the first dorsal
        draw_f.line([body.at(0.26, -1.2), body.at(0.42, -1.2)], fill=(60, 30, 30), width=max(1, size // 90))
    if species == 8:  # trout spots continue onto the tail
        r = max(1.0, size / 130)
        xe = body.x0 + body.length
        for _ in range(10):
            x, y = xe + rng.uniform(0, tail_len), body.cy + rng.uniform(-0.35, 0.35) * d
            draw_f.ellipse((x - r, y - r, x + r, y + r), fill=(25, 25, 20))


def _pectoral(det: ImageDraw.ImageDraw, body: _Body, fin: np.ndarray) -> None:
    """Small pectoral fin laid on the flank behind the gill."""
    a, b = body.at(0.26, 0.15), body.at(0.27, 0.4)
    tip = body.at(0.42, 0.45)
    det.polygon([a, tip, b], fill=_rgb(fin * 0.9))


def _draw_fish(species: int, rng: np.random.Generator, size: int) -> tuple[Image.Image, Image.Image]:
    """A fish in canonical pose (nose left, centred): returns (RGB, alpha mask)."""
    look = _LOOKS[species]
    body, tail_len = _make_body(look, rng, size)
    back, belly, fin = _mix(look.back_colour, rng), _mix(look.belly_colour, rng), _mix(look.fin_colour, rng)

    ramp = _gradient(body, back, belly, size)
    if species == 8:  # rainbow trout's pink flank band
        _band(ramp, body, 0.05, 0.12, np.array([215.0, 120.0, 130.0]), rng.uniform(0.5, 0.8))
    if species in (0, 2, 5):  # silver fish get a bright sheen just below the midline
        _band(ramp, body, 0.2, 0.15, np.array([235.0, 238.0, 240.0]), rng.uniform(0.2, 0.5))
    texture = Image.fromarray(
        np.repeat(np.clip(ramp, 0, 255).astype(np.uint8)[:, None, :], size, axis=1), "RGB"
    )

    colour = Image.new("RGB", (size, size), _rgb(fin))
    alpha = Image.new("L", (size, size), 0)
    draw_a, draw_c = ImageDraw.Draw(alpha), ImageDraw.Draw(colour)
    _fins(draw_a, draw_c, body, species, rng, tail_len, look.tail, size, fin)

    # Details that cross the body edge are recorded now and drawn after the body is pasted.
    details = _Deferred()
    _MARKERS[species](ImageDraw.Draw(texture), details, body, rng, size, back)

    body_mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(body_mask).polygon(body.outline(), fill=255)
    colour.paste(texture, (0, 0), body_mask)
    alpha.paste(255, (0, 0), body_mask)

    _gill(draw_c, body, 0.2, _rgb(back * 0.7), max(1, size // 140))
    _pectoral(draw_c, body, fin)
    details.replay(draw_c, draw_a)
    _eye(draw_c, body, body.depth * look.eye * 0.5)
    return colour, alpha


def _draw_shrimp(rng: np.random.Generator, size: int) -> tuple[Image.Image, Image.Image]:
    """A curled, segmented shrimp in canonical pose (C open to the right): (RGB, alpha)."""
    colour = Image.new("RGB", (size, size), (0, 0, 0))
    alpha = Image.new("L", (size, size), 0)
    draw_c, draw_a = ImageDraw.Draw(colour), ImageDraw.Draw(alpha)
    base = _mix(((215.0, 140.0, 120.0), (240.0, 195.0, 175.0)), rng, jitter=10.0)
    radius = rng.uniform(0.18, 0.25) * size
    span = rng.uniform(2.5, 3.6)  # radians of arc the body covers
    width0 = radius * rng.uniform(0.6, 0.8)
    # Centre the arc's mass, not the arc's centre, on the canvas.
    cx, cy = size / 2 + radius * 0.45, size / 2
    head_a, tail_a = math.pi - span / 2, math.pi + span / 2
    line_w = max(1, size // 120)

    def ring_point(a: float, r: float) -> Point:
        return cx + r * math.cos(a), cy + r * math.sin(a)

    # Carapace takes the first ~30 % of the arc, then six tapering abdominal segments.
    cuts = [head_a, head_a + span * 0.3] + list(np.linspace(head_a + span * 0.3, tail_a, 7)[1:])
    for i, (a0, a1) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
        w0 = width0 * (1.0 - 0.55 * (a0 - head_a) / span)
        w1 = width0 * (1.0 - 0.55 * (a1 - head_a) / span)
        arc = np.linspace(a0, a1, 5)
        outer = [ring_point(a, radius + w0 / 2 + (w1 - w0) / 2 * k / 4) for k, a in enumerate(arc)]
        inner = [
            ring_point(a, radius - w0 / 2 - (w1 - w0) / 2 * k / 4) for k, a in reversed(list(enumerate(arc)))
        ]
        shade = 0.92 + 0.12 * (i % 2) + rng.uniform(-0.04, 0.04)
        poly = outer + inner
        draw_c.polygon(poly, fill=_rgb(np.clip(base * shade, 0, 255)), outline=_rgb(base * 0.6), width=line_w)
        draw_a.polygon(poly, fill=255)

    # Tail fan: three blades spreading from the last segment.
    tip = ring_point(tail_a, radius)
    tangent = tail_a + math.pi / 2
    fan_len = width0 * rng.uniform(0.8, 1.1)
    for spread in (-0.5, 0.0, 0.5):
        a = tangent + spread
        end = (tip[0] + fan_len * math.cos(a), tip[1] + fan_len * math.sin(a))
        side = a + math.pi / 2
        half = width0 * 0.12
        blade = [
            (tip[0] + half * math.cos(side), tip[1] + half * math.sin(side)),
            end,
            (tip[0] - half * math.cos(side), tip[1] - half * math.sin(side)),
        ]
        draw_c.polygon(blade, fill=_rgb(base * 0.85), outline=_rgb(base * 0.55))
        draw_a.polygon(blade, fill=230)

    # Head: rostrum spike, eye, long antennae and walking legs on the inside of the curl.
    head = ring_point(head_a, radius)
    forward = head_a - math.pi / 2
    ros = (head[0] + width0 * 0.7 * math.cos(forward), head[1] + width0 * 0.7 * math.sin(forward))
    for d in (draw_c, draw_a):
        d.line([head, ros], fill=_rgb(base * 0.8) if d is draw_c else 255, width=max(2, size // 70))
    ex, ey = ring_point(head_a + 0.12, radius + width0 * 0.15)
    er = max(1.5, width0 * 0.12)
    draw_c.ellipse((ex - er, ey - er, ex + er, ey + er), fill=(20, 20, 20))
    for bend in (0.3, 0.6):
        pts = [head]
        ln = size * rng.uniform(0.25, 0.4)
        for k in range(1, 5):
            a = forward + bend * k / 4 + rng.uniform(-0.1, 0.1)
            px, py = pts[-1]
            pts.append((px + ln / 4 * math.cos(a), py + ln / 4 * math.sin(a)))
        draw_c.line(pts, fill=_rgb(base * 0.7), width=max(1, size // 200))
        draw_a.line(pts, fill=255, width=max(1, size // 200))
    for a in np.linspace(head_a + 0.1, head_a + span * 0.6, 8):
        p0 = ring_point(a, radius - width0 * 0.45)
        p1 = ring_point(a + 0.08, radius - width0 * 0.85)
        draw_c.line([p0, p1], fill=_rgb(base * 0.75), width=line_w)
        draw_a.line([p0, p1], fill=255, width=line_w)
    return colour, alpha


# --- backgrounds and lighting ---------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Blobby noise, roughly in [0, 1]: a cells x cells random grid, bicubically upsampled."""
    small = Image.fromarray(rng.random((cells, cells), dtype=np.float32))
    return np.asarray(small.resize((size, size), Image.Resampling.BICUBIC))


def _bg_tray(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    # Blue plastic tray with moulded ribs, the most common setting in the real photos.
    base = _mix(((40.0, 85.0, 140.0), (100.0, 155.0, 210.0)), rng, jitter=10.0)
    x = np.arange(size, dtype=np.float32)
    ribs = 1.0 + 0.05 * np.sin(2 * np.pi * x / rng.uniform(10, 30))
    return base, ribs[None, :] * (0.9 + 0.2 * _smooth_noise(rng, size, 4))


def _bg_paper(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    grey = rng.uniform(185, 245)
    base = np.clip(np.array([grey, grey, grey]) + rng.normal(0, 6, 3), 0, 255).astype(np.float32)
    return base, 0.93 + 0.1 * _smooth_noise(rng, size, 3)


def _bg_ice(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    # Crushed ice: bright chunks with darker gaps between them.
    base = _mix(((190.0, 200.0, 210.0), (225.0, 232.0, 240.0)), rng)
    chunks = _smooth_noise(rng, size, max(4, size // int(rng.integers(8, 16))))
    return base, 0.7 + 0.5 * chunks


def _bg_wood(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    base = _mix(((110.0, 75.0, 45.0), (180.0, 130.0, 85.0)), rng)
    y = np.arange(size, dtype=np.float32)[:, None]
    warp = _smooth_noise(rng, size, 3) * rng.uniform(1.0, 3.0)
    grain = 0.88 + 0.12 * np.sin(2 * np.pi * (y / rng.uniform(6, 18) + warp))
    return base, grain


def _bg_steel(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    grey = rng.uniform(110, 180)
    base = np.array([grey, grey * 1.02, grey * 1.05], dtype=np.float32)
    brushed = 1.0 + rng.normal(0, 0.03, (size, 1)).astype(np.float32)
    return base, brushed * (0.9 + 0.2 * _smooth_noise(rng, size, 2))


_BACKGROUNDS = (_bg_tray, _bg_tray, _bg_paper, _bg_ice, _bg_wood, _bg_steel)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Random background as planar float32 [3, size, size] in 0..255."""
    base, pattern = _BACKGROUNDS[int(rng.integers(len(_BACKGROUNDS)))](rng, size)
    pattern = np.broadcast_to(pattern, (size, size))
    return pattern[None, :, :] * base[:, None, None]


def _pose(
    colour: Image.Image, alpha: Image.Image, rng: np.random.Generator, size: int
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Flip, rotate and shift the canonical drawing.

    Returns planar float32 RGB [3, size, size], alpha [size, size] in 0..1 and
    the shadow offset in pixels.
    """
    rgba = colour.copy()
    rgba.putalpha(alpha)
    if rng.random() < 0.5:
        rgba = rgba.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.15:
        rgba = rgba.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    angle = rng.uniform(-50, 50)
    shift = rng.uniform(-0.08, 0.08, 2) * size
    # Nearest-neighbour rotation is ~20x faster than bilinear on RGBA; the jagged
    # edges it leaves are hidden by the sensor noise added later.
    rgba = rgba.rotate(angle, resample=Image.Resampling.NEAREST, translate=(float(shift[0]), float(shift[1])))
    arr = np.ascontiguousarray(np.asarray(rgba).transpose(2, 0, 1), dtype=np.float32)
    shadow = (int(rng.integers(-size // 30, size // 30 + 1)), int(rng.integers(0, size // 25 + 1)))
    alpha = arr[3]
    alpha *= 1.0 / 255.0
    return arr[:3], alpha, shadow


def _shadow(alpha: np.ndarray, offset: tuple[int, int], size: int) -> np.ndarray:
    """Soft drop shadow: the alpha mask blurred (down- then up-sampled) and shifted."""
    small = max(4, size // 10)
    img = Image.fromarray(alpha.astype(np.float32))
    blurred = np.asarray(
        img.resize((small, small), Image.Resampling.BILINEAR).resize((size, size), Image.Resampling.BILINEAR)
    )
    return np.roll(blurred, (offset[1], offset[0]), axis=(0, 1))


def _light(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exposure, colour cast, a directional light falloff and sensor noise.

    Works in place on planar float32 [3, size, size]; returns uint8 [size, size, 3].
    """
    size = img.shape[1]
    gain = rng.uniform(0.75, 1.15) * (1.0 + rng.normal(0, 0.04, 3)).astype(np.float32)
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    theta, strength = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.2)
    falloff = 1.0 + strength * (math.cos(theta) * ramp[None, :] + math.sin(theta) * ramp[:, None])
    img *= falloff[None, :, :]
    img *= gain[:, None, None]
    # Grey (luminance) noise only, as photo noise after JPEG mostly is. Uniform noise
    # from raw random bytes is ~10x cheaper than Gaussian and looks the same here.
    noise = np.frombuffer(rng.bytes(size * size), dtype=np.uint8).reshape(1, size, size).astype(np.float32)
    noise -= 127.5
    noise *= rng.uniform(3.0, 12.0) / 127.5
    img += noise
    np.clip(img, 0, 255, out=img)
    return np.ascontiguousarray(img.astype(np.uint8).transpose(1, 2, 0))


def render(species: int, rng: np.random.Generator, size: int = 224) -> Image.Image:
    """Render one synthetic photo of `SPECIES[species]` as a size x size RGB image.

    All randomness (shape, palette, markings, pose, background, lighting and
    noise) comes from `rng`, so the same generator state gives the same photo.
    """
    if not 0 <= species < len(SPECIES):
        raise ValueError(f"species index must be in [0, {len(SPECIES)}), got {species}")
    colour, alpha = _draw_shrimp(rng, size) if species == _SHRIMP else _draw_fish(species, rng, size)
    fish, a, offset = _pose(colour, alpha, rng, size)
    bg = _background(rng, size)
    # Everything is planar [3, H, W] so that per-pixel masks broadcast over the
    # leading axis: broadcasting over a trailing axis of 3 is several times slower.
    bg *= 1.0 - rng.uniform(0.25, 0.5) * _shadow(a, offset, size)[None, :, :]
    fish -= bg
    fish *= a[None, :, :]
    bg += fish  # bg + (fish - bg) * alpha, without temporaries
    return Image.fromarray(_light(bg, rng), "RGB")


def make_dataset(n_per_class: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Render `n_per_class` photos of every species, shuffled.

    Returns uint8 images [N, size, size, 3] and int64 labels [N] (indices into
    `SPECIES`); the same seed always gives the same arrays.
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(len(SPECIES), dtype=np.int64), n_per_class))
    images = np.empty((labels.size, size, size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i] = np.asarray(render(int(label), rng, size))
    return images, labels
