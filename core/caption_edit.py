"""Caption edits for TurboEdit: one attribute of a detailed caption changed (Wu et al. 2024, Sec. 3.3).

Rules (documented in the Caption Editor row of docs/nodes.md's node table):
- an edit is ``old → new`` (``->``, ``=>`` and ``→`` all work), or ``attribute: value`` for a built-in
  attribute (color, material, season, time of day, weather) whose single current value is found in
  the caption;
- matching is case-insensitive and on whole words (``red`` does not match ``bored``); punctuation
  around the words is kept; runs of whitespace in the edit match any whitespace;
- every occurrence is replaced unless ``occurrence`` is a 1-based index;
- the replacement is inserted as typed.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

ARROWS = ("→", "->", "=>")
ATTRIBUTES = {
    "color": ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "grey",
              "gray", "golden", "silver", "beige", "teal", "turquoise", "violet"],
    "material": ["wooden", "wood", "metal", "metallic", "glass", "plastic", "stone", "marble", "leather", "paper",
                 "concrete", "brick", "golden", "silver", "ceramic", "fabric"],
    "season": ["spring", "summer", "autumn", "fall", "winter"],
    "time of day": ["morning", "noon", "afternoon", "evening", "night", "sunset", "sunrise", "dusk", "dawn"],
    "weather": ["sunny", "cloudy", "rainy", "snowy", "foggy", "stormy", "overcast", "windy"],
}


class CaptionEditError(ValueError):
    """An edit that cannot be applied to the caption (the message names the input)."""


@dataclass
class CaptionEdit:
    source: str
    target: str
    old: str
    new: str
    spans: list[tuple[int, int]]  # character spans of ``old`` in the source caption


def parse_edit(edit: str, caption: str) -> tuple[str, str]:
    """(old, new) from ``old → new`` or ``attribute: value``."""
    text = edit.strip()
    if not text:
        raise CaptionEditError("edit: empty; write it as 'old → new' (e.g. 'red → blue') or 'color: blue'")
    for arrow in ARROWS:
        if arrow in text:
            old, new = (part.strip() for part in text.split(arrow, 1))
            if not old:
                raise CaptionEditError(f"edit: nothing to replace before '{arrow}' in {edit!r}")
            return old, new
    if ":" in text:
        attribute, value = (part.strip() for part in text.split(":", 1))
        return current_value(attribute, caption), value
    raise CaptionEditError(f"edit: {edit!r} is neither 'old → new' nor 'attribute: value'")


def current_value(attribute: str, caption: str) -> str:
    """The single value of a built-in attribute found in the caption."""
    key = attribute.lower().replace("_", " ").replace("colour", "color")
    if key not in ATTRIBUTES:
        raise CaptionEditError(f"edit: unknown attribute {attribute!r}; use one of {sorted(ATTRIBUTES)} or 'old → new'")
    found = sorted({m.group(0).lower() for v in ATTRIBUTES[key] for m in _word_pattern(v).finditer(caption)})
    if not found:
        raise CaptionEditError(f"edit: the caption names no {key} ({', '.join(ATTRIBUTES[key][:6])}, …); "
                               "write the edit as 'old → new'")
    if len(found) > 1:
        raise CaptionEditError(f"edit: the caption names several {key}s {found}; write the edit as 'old → new'")
    return found[0]


def _word_pattern(phrase: str) -> re.Pattern:
    words = [re.escape(w) for w in phrase.split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


def apply_edit(caption: str, edit: str, occurrence: int = 0) -> CaptionEdit:
    """Source and target captions for ``edit`` (occurrence 0 = all, n = the n-th only)."""
    source = " ".join(caption.split())
    if not source:
        raise CaptionEditError("caption: empty; give a detailed caption of the image")
    old, new = parse_edit(edit, source)
    matches = list(_word_pattern(old).finditer(source))
    if not matches:
        raise CaptionEditError(f"edit: {old!r} does not occur in the caption (matching is case-insensitive, "
                               "on whole words)")
    if occurrence:
        if occurrence > len(matches):
            raise CaptionEditError(f"occurrence: {occurrence} but {old!r} occurs {len(matches)} time(s)")
        matches = [matches[occurrence - 1]]
    spans = [m.span() for m in matches]
    target, last = [], 0
    for start, end in spans:
        target += [source[last:start], new]
        last = end
    target.append(source[last:])
    return CaptionEdit(source, " ".join("".join(target).split()), old, new, spans)


def changed_token_positions(source_ids: list[int], target_ids: list[int]) -> tuple[list[int], list[int]]:
    """Positions of tokens that differ between two token sequences (difflib alignment)."""
    matcher = difflib.SequenceMatcher(a=source_ids, b=target_ids, autojunk=False)
    src, tgt = [], []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            src += list(range(i1, i2))
            tgt += list(range(j1, j2))
    return src, tgt


def conditioning_positions(positions: list[int], token_count: int, conditioning_length: int) -> list[int]:
    """Token positions → positions in the encoded conditioning. An encoder that returns fewer positions than it was
    given tokens dropped a prefix (Qwen-Image drops its chat template): positions shift by what was dropped."""
    offset = max(0, token_count - conditioning_length)
    return [p - offset for p in positions if p >= offset]
