"""Does an element's inline ``style`` hide its text from a reader?

Hidden text is a prompt-injection and hidden-link vector: the page shows one thing, the evidence
would say another. Besides ``display:none`` and ``visibility:hidden``, text is hidden by size
(``font-size:0``, a 0x0 box with ``overflow:hidden``), by opacity (``opacity:0``), by position
(far off-screen, ``text-indent:-9999px``, a zero-area ``clip``/``clip-path``, ``scale(0)``) and by
colour (transparent, the same as its own background, or white on the light background a page is
assumed to have). Only inline styles are read: style sheets are not applied.

``style_visibility(style)`` answers ``HIDDEN``, ``VISIBLE`` or ``LIGHT_TEXT`` (white-ish text
that is hidden unless an ancestor's inline background is dark: the caller decides, because it
knows the ancestors); ``background_is_dark(style)`` gives an element's own inline background.
Values are parsed as a browser would: case-insensitive, comments and ``!important`` ignored,
CSS escapes decoded, the last declaration of a property winning (an ``!important`` one over
later plain ones).
"""

from __future__ import annotations

import re
from functools import lru_cache

VISIBLE, HIDDEN, LIGHT_TEXT = "visible", "hidden", "light-text"

_COMMENT = re.compile(r"/\*.*?(?:\*/|$)", re.DOTALL)
_ESCAPE = re.compile(r"\\([0-9a-fA-F]{1,6})\s?|\\(.)", re.DOTALL)
_IMPORTANT = re.compile(r"!\s*important\s*$")
_LENGTH = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)([a-z%]*)$")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)%?")
_PX_PER = {"": 1.0, "px": 1.0, "pt": 4 / 3, "pc": 16.0, "em": 16.0, "rem": 16.0, "ex": 8.0,
           "ch": 8.0, "cm": 96 / 2.54, "mm": 96 / 25.4, "in": 96.0, "q": 96 / 101.6,
           "vw": 10.0, "vh": 10.0, "vmin": 10.0, "vmax": 10.0}  # fmt: skip
_OFFSCREEN_PX = -500.0  # an absolutely placed box further left/up than this is not on screen
_NEAR_WHITE = 240  # every channel at least this: white-ish (contrast on white below ~1.15)
_LIGHT_NAMES = {"white": (255, 255, 255), "snow": (255, 250, 250), "ivory": (255, 255, 240),
                "ghostwhite": (248, 248, 255), "whitesmoke": (245, 245, 245),
                "floralwhite": (255, 250, 240), "azure": (240, 255, 255),
                "mintcream": (245, 255, 250), "honeydew": (240, 255, 240),
                "aliceblue": (240, 248, 255), "seashell": (255, 245, 238),
                "lavenderblush": (255, 240, 245), "linen": (250, 240, 230),
                "oldlace": (253, 245, 230), "cornsilk": (255, 248, 220),
                "lightyellow": (255, 255, 224)}  # fmt: skip
_DARK_NAMES = {"black": (0, 0, 0), "navy": (0, 0, 128), "darkblue": (0, 0, 139),
               "maroon": (128, 0, 0), "purple": (128, 0, 128), "green": (0, 128, 0),
               "darkgreen": (0, 100, 0), "gray": (128, 128, 128), "grey": (128, 128, 128),
               "dimgray": (105, 105, 105), "darkslategray": (47, 79, 79), "red": (255, 0, 0),
               "blue": (0, 0, 255), "teal": (0, 128, 128), "olive": (128, 128, 0)}  # fmt: skip

Rgba = tuple[int, int, int, float]


def _unescape(match: re.Match[str]) -> str:
    if match.group(1):
        code = int(match.group(1), 16)
        return chr(code) if 0 < code <= 0x10FFFF else "\ufffd"
    return match.group(2)


def declarations(style: str) -> dict[str, str]:
    """``{property: value}``, lower-cased, whitespace collapsed, ``!important`` removed."""
    if "/*" in style:
        style = _COMMENT.sub(" ", style)
    if "\\" in style:
        style = _ESCAPE.sub(_unescape, style)
    out: dict[str, str] = {}
    important: set[str] = set()
    for declaration in style.lower().split(";"):
        name, colon, value = declaration.partition(":")
        if not colon:
            continue
        name, value = name.strip(), " ".join(value.split())
        is_important = bool(_IMPORTANT.search(value))
        if is_important:
            value = _IMPORTANT.sub("", value).strip()
        if not name or not value or (name in important and not is_important):
            continue
        out[name] = value
        if is_important:
            important.add(name)
    return out


def _px(value: str | None) -> float | None:
    """A length in CSS pixels (relative units taken at a 16 px font, 1000 px viewport)."""
    if not value:
        return None
    m = _LENGTH.match(value.split()[0])
    if m is None:
        return None
    unit = m.group(2)
    if unit == "%":
        return float(m.group(1)) * 0.16  # of a 16 px font: font-size's base
    factor = _PX_PER.get(unit)
    return float(m.group(1)) * factor if factor is not None else None


def parse_color(value: str | None) -> Rgba | None:
    """``(r, g, b, alpha)`` of a CSS colour (hex, rgb(a), hsl(a), a few names), else None."""
    if not value:
        return None
    value = value.strip()
    if value == "transparent":
        return (0, 0, 0, 0.0)
    if value in _LIGHT_NAMES:
        return (*_LIGHT_NAMES[value], 1.0)
    if value in _DARK_NAMES:
        return (*_DARK_NAMES[value], 1.0)
    if value.startswith("#"):
        digits = value[1:]
        if not re.fullmatch(r"[0-9a-f]{3,8}", digits) or len(digits) in (5, 7):
            return None
        if len(digits) <= 4:
            digits = "".join(c * 2 for c in digits)
        alpha = int(digits[6:8], 16) / 255 if len(digits) == 8 else 1.0
        return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16), alpha)
    function, _, rest = value.partition("(")
    numbers = _NUMBER.findall(rest)
    if function in {"rgb", "rgba"} and len(numbers) >= 3:
        channels = [_channel(n, 255) for n in numbers[:3]]
        return (*channels, _alpha(numbers[3]) if len(numbers) > 3 else 1.0)  # type: ignore[return-value]
    if function in {"hsl", "hsla"} and len(numbers) >= 3:
        lightness = float(numbers[2].rstrip("%"))
        grey = round(255 * min(max(lightness, 0.0), 100.0) / 100)  # hue ignored: only
        return (grey, grey, grey, _alpha(numbers[3]) if len(numbers) > 3 else 1.0)  # lightness
    return None


def _channel(number: str, scale: int) -> int:
    if number.endswith("%"):
        return round(float(number[:-1]) * scale / 100)
    return round(float(number))


def _alpha(number: str) -> float:
    return float(number[:-1]) / 100 if number.endswith("%") else float(number)


def _near_white(color: Rgba) -> bool:
    return min(color[:3]) >= _NEAR_WHITE


def _background(decl: dict[str, str]) -> Rgba | None:
    color = parse_color(decl.get("background-color"))
    if color is None and "background" in decl:
        for token in re.split(r"\s+(?![^(]*\))", decl["background"]):
            color = parse_color(token)
            if color is not None:
                break
    return color


_CACHED_UP_TO = 512  # characters: longer (rare, possibly hostile) styles are not kept in caches


def background_is_dark(style: str) -> bool | None:
    """True/False when the inline style sets an opaque dark/light background, else None."""
    return _cached_background(style) if len(style) <= _CACHED_UP_TO else _background_of(style)


def _background_of(style: str) -> bool | None:
    color = _background(declarations(style))
    if color is None or color[3] < 0.5:
        return None
    return not _near_white(color) and sum(color[:3]) < 3 * 200


def _font_size(decl: dict[str, str]) -> float | None:
    size = _px(decl.get("font-size"))
    if size is None and "font" in decl:
        for token in decl["font"].split():
            head = token.split("/")[0]
            m = _LENGTH.match(head)
            # a unitless number other than 0 is a font-weight ("700"), not a size
            if m is not None and (m.group(2) or float(m.group(1)) == 0):
                return _px(head)
    return size


def _offscreen(decl: dict[str, str]) -> bool:
    if decl.get("position") in {"absolute", "fixed"}:
        for side in ("left", "top"):
            offset = _px(decl.get(side))
            if offset is not None and offset <= _OFFSCREEN_PX:
                return True
    indent = _px(decl.get("text-indent"))
    return indent is not None and indent <= _OFFSCREEN_PX


def _clipped(decl: dict[str, str]) -> bool:
    clip = decl.get("clip", "")
    if clip.startswith("rect("):
        edges = [_px(v) for v in re.split(r"[\s,]+", clip[5:].rstrip(")").strip())]
        if len(edges) == 4 and None not in edges:
            top, right, bottom, left = edges
            if bottom <= top or right <= left:  # type: ignore[operator]
                return True
    path = decl.get("clip-path", "")
    if path.startswith("inset("):
        insets = [v for v in re.split(r"\s+", path[6:].split(")")[0].strip()) if v]
        if insets and all(v.endswith("%") and _float(v[:-1]) >= 50 for v in insets[:2]):
            return True
    if re.match(r"(circle|ellipse)\(\s*0(px|%)?\s*(\)|at\b)", path):
        return True
    return bool(re.search(r"\bscale[xy]?\(\s*0(\.0*)?\s*[,)]", decl.get("transform", "")))


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def _zero_box(decl: dict[str, str]) -> bool:
    """A box of at most 1x1 px that clips its content (``sr-only``, collapsed wrappers)."""
    if "hidden" not in decl.get("overflow", "") and "clip" not in decl.get("overflow", ""):
        return False
    width = _px(decl.get("width")) if "width" in decl else _px(decl.get("max-width"))
    height = _px(decl.get("height")) if "height" in decl else _px(decl.get("max-height"))
    if width is None or height is None or width > 1 or height > 1:
        return False
    # "height:0; padding-bottom:56%" is the aspect-ratio box of an embed: its padding shows.
    return not any(
        (_px(decl.get(p)) or 0) > 1 or "%" in decl.get(p, "")
        for p in ("padding", "padding-top", "padding-bottom")
    )


def style_visibility(style: str) -> str:
    """``HIDDEN``, ``VISIBLE`` or ``LIGHT_TEXT`` for one inline ``style`` value."""
    return _cached_visibility(style) if len(style) <= _CACHED_UP_TO else _visibility(style)


def _visibility(style: str) -> str:
    decl = declarations(style)
    if not decl:
        return VISIBLE
    if decl.get("display") == "none" or decl.get("visibility") in {"hidden", "collapse"}:
        return HIDDEN
    opacity = decl.get("opacity")
    if opacity is not None:
        amount = _float(opacity[:-1]) / 100 if opacity.endswith("%") else _float(opacity)
        if opacity.strip() and amount <= 0.05 and _NUMBER.fullmatch(opacity):
            return HIDDEN
    size = _font_size(decl)
    if (size is not None and size <= 1) or _zero_box(decl) or _offscreen(decl) or _clipped(decl):
        return HIDDEN
    color = parse_color(decl.get("color"))
    if color is None:
        return VISIBLE
    if color[3] <= 0.05:
        return HIDDEN
    background = _background(decl)
    if background is not None and background[3] >= 0.5:
        same = all(abs(a - b) <= 8 for a, b in zip(color[:3], background[:3], strict=True))
        return HIDDEN if same else VISIBLE  # its own background decides
    return LIGHT_TEXT if _near_white(color) else VISIBLE


# Values repeat within a site (and across pages of one): cached per value.
_cached_visibility = lru_cache(maxsize=4096)(_visibility)
_cached_background = lru_cache(maxsize=4096)(_background_of)
