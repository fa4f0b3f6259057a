"""The display-text rule (onceonly.hub.kit.strict, decision 0072) as a table: text shown to
people holds no bidirectional control, no zero-width character, no other control or
format character (Unicode Cc, Cf) and no lone surrogate; a name is one line, free text
may hold tab, LF and CR. Refused, never removed, and the reason never quotes the text."""

import pytest

from onceonly.hub.kit.strict import display_text_problem

# Every bidirectional control and zero-width character decision 0072 names
BIDI = [
    "\u061c",
    "\u200e",
    "\u200f",
    *map(chr, range(0x202A, 0x202F)),
    *map(chr, range(0x2066, 0x206A)),
]
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]
OTHER_INVISIBLE = {
    "NUL": "\x00",
    "escape": "\x1b",
    "DEL": "\x7f",
    "C1 control": "\x85",
    "soft hyphen": "\u00ad",
    "Arabic number sign": "\u0600",
    "interlinear annotation anchor": "\ufff9",
    "tag letter A": "\U000e0041",
    "lone surrogate": "\ud800",
}
SHOWN = {
    "plain": "Tax and Customs Board",
    "Estonian letters": "Maksu- ja Tolliamet \u00d5\u00c4\u00d6\u00dc",
    "Cyrillic and Arabic letters": "\u0416 \u0639\u0631\u0628\u064a",
    "Hebrew, written right to left by itself": "\u05de\u05e1 \u05d4\u05db\u05e0\u05e1\u05d4",
    "no-break space": "10\u00a0000",
    "ideographic space": "\u7a0e\u52a1\u5c40\u3000\u603b\u5c40",
    "emoji": "\U0001f3db Board",
    "empty": "",
}


@pytest.mark.parametrize("lines", [False, True])
@pytest.mark.parametrize("char", BIDI, ids=lambda c: f"U+{ord(c):04X}")
def test_a_bidirectional_control_is_refused(char: str, lines: bool) -> None:
    assert display_text_problem(f"Tax{char}Board", lines=lines) == (
        "holds a bidirectional control character, which reorders the text shown"
    )


@pytest.mark.parametrize("lines", [False, True])
@pytest.mark.parametrize("char", ZERO_WIDTH, ids=lambda c: f"U+{ord(c):04X}")
def test_a_zero_width_character_is_refused(char: str, lines: bool) -> None:
    assert display_text_problem(f"Ann{char}Smith", lines=lines) == (
        "holds a zero-width character, which is not seen"
    )


@pytest.mark.parametrize("lines", [False, True])
@pytest.mark.parametrize("char", OTHER_INVISIBLE.values(), ids=OTHER_INVISIBLE.keys())
def test_another_control_or_format_character_is_refused(char: str, lines: bool) -> None:
    problem = display_text_problem(f"Board{char}", lines=lines)
    assert problem is not None
    assert "Board" not in problem


@pytest.mark.parametrize("lines", [False, True])
@pytest.mark.parametrize("text", SHOWN.values(), ids=SHOWN.keys())
def test_text_people_can_read_is_taken(text: str, lines: bool) -> None:
    assert display_text_problem(text, lines=lines) is None


@pytest.mark.parametrize("text", ["two\nlines", "two\r\nlines", "a\ttab"])
def test_a_line_break_or_tab_is_free_text_not_a_name(text: str) -> None:
    assert display_text_problem(text, lines=True) is None
    assert display_text_problem(text, lines=False) is not None
