"""A static check for regular expressions that can backtrack catastrophically.

Rollout rules run user-written regexes on every evaluation, in every client; Python's
``re`` is a backtracking engine, so a pattern such as ``(a+)+$`` takes exponential time
on a short hostile input. ``configctl validate`` refuses such patterns up front.

The detector walks the parse tree of CPython's own regex parser (``re._parser``: the very
tree the engine compiles, so there is no second grammar to drift from it) and flags the
two shapes that make a backtracking matcher exponential (star height and ambiguity, after
Weideman et al., "Analyzing matching time behavior of backtracking regular expression
matchers by using ambiguity of NFA", 2016):

1. **nested quantifiers**: a repeat that can run many times (unbounded, or at least
   :data:`OUTER_LIMIT`) around a sub-pattern that itself holds a repeat of more than one
   (``(a+)+``, ``(a*b?)*``, ``(\\w+\\s?)*``, ``([a-z]+\\.){2,}``): the input can be split
   between the two loops in exponentially many ways;
2. **overlapping alternatives under a repeat**: a repeated alternation two of whose
   branches can start with the same character, or one of which can match nothing
   (``(a|aa)*``, ``(x|.)*``, ``(ab|a)*``): each repetition may take either branch.
   The parser factors common prefixes first (``(a|aa)`` is ``a(?:|a)``), and turns
   single-character alternations into a class (``(\\w|\\d)`` is ``[\\w\\d]``, one
   character per iteration, which is not ambiguous), so the check sees what runs.

Atomic groups and possessive quantifiers (``(?>...)``, ``a*+``) never backtrack into
themselves and are not flagged. The check is conservative: it may refuse a pattern that
is in fact safe (``(\\d+,)*`` with a separator the loop cannot consume), which is the right
side to err on for code run in every client; such a pattern is rewritten with a bounded
or possessive repeat. Polynomial cases (``.*a.*a``) are allowed; the evaluator bounds them
by matching only context strings up to 4 KiB.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from typing import Any, Final

__all__ = ["OUTER_LIMIT", "backtracking_risk"]

OUTER_LIMIT: Final = 10
"""A repeat bounded below this many iterations is not treated as "many"."""

# CPython's parser and constants, imported by name: ``sre_parse`` is the deprecated alias
# (it warns), ``re._parser`` the module the engine itself uses since 3.11.
_parser = importlib.import_module("re._parser")
_MAXREPEAT: Final[int] = int(importlib.import_module("re._constants").MAXREPEAT)

_ALPHABET: Final = 0x300
"""First-character sets are computed over U+0000..U+02FF: enough to see any overlap of
the character classes people write, cheap enough to build as sets."""


def backtracking_risk(pattern: str) -> str | None:
    """Why ``pattern`` can backtrack catastrophically, or None if the check finds nothing.

    An invalid pattern raises ``re.error`` (the caller reports that separately).
    """
    parsed = _parser.parse(pattern)
    return _scan(list(parsed), depth=0)


def _op(item: object) -> tuple[str, Any]:
    """(opcode name, argument) of one parse-tree item.

    The argument's shape depends on the opcode (CPython's parser is untyped): Any is
    confined to this module, which checks the shapes it reads by the opcode.
    """
    if not isinstance(item, tuple) or len(item) != 2:
        return "", None
    return str(item[0]), item[1]


def _scan(items: Iterable[object], depth: int) -> str | None:
    """Walk a sub-pattern; ``depth`` counts enclosing repeats that can run many times."""
    for item in items:
        name, arg = _op(item)
        if name in {"MAX_REPEAT", "MIN_REPEAT"}:
            _low, high, body = arg
            body_items = list(body)
            many = high == _MAXREPEAT or int(high) >= OUTER_LIMIT
            if many and _has_multi_repeat(body_items):
                return "nested quantifiers: a repeated group contains another repeat (like (a+)+)"
            if high == _MAXREPEAT or int(high) > 1:
                overlap = _overlapping_branches(body_items)
                if overlap is not None:
                    return overlap
            found = _scan(body_items, depth + (1 if many else 0))
            if found is not None:
                return found
        elif name == "SUBPATTERN":
            found = _scan(list(arg[-1]), depth)
            if found is not None:
                return found
        elif name == "BRANCH":
            for branch in arg[1]:
                found = _scan(list(branch), depth)
                if found is not None:
                    return found
        elif name in {"ASSERT", "ASSERT_NOT"}:
            found = _scan(list(arg[1]), depth)
            if found is not None:
                return found
        # ATOMIC_GROUP and POSSESSIVE_REPEAT never backtrack into themselves: skipped.
    return None


def _has_multi_repeat(items: Iterable[object]) -> bool:
    """Does the sub-pattern hold a backtracking repeat of more than one iteration?"""
    for item in items:
        name, arg = _op(item)
        if name in {"MAX_REPEAT", "MIN_REPEAT"}:
            _low, high, body = arg
            if high == _MAXREPEAT or int(high) > 1 or _has_multi_repeat(list(body)):
                return True
        elif name == "SUBPATTERN":
            if _has_multi_repeat(list(arg[-1])):
                return True
        elif name == "BRANCH" and any(_has_multi_repeat(list(b)) for b in arg[1]):
            return True
    return False


def _overlapping_branches(items: list[object]) -> str | None:
    """A message if a top-level alternation of the repeated body has overlapping branches."""
    for item in items:
        name, arg = _op(item)
        if name == "SUBPATTERN":
            found = _overlapping_branches(list(arg[-1]))
            if found is not None:
                return found
            continue
        if name == "BRANCH":
            firsts = [_first_chars(list(b)) for b in arg[1]]
            for i, a in enumerate(firsts):
                for b in firsts[i + 1 :]:
                    if a is None or b is None or a & b:
                        return (
                            "overlapping alternatives under a repeat: two branches can match "
                            "the same text (like (a|aa)*)"
                        )
        # Other items (literals, classes, nested repeats) are looked at by _scan itself.
    return None


def _first_chars(items: list[object]) -> frozenset[int] | None:
    """Characters a sub-pattern can start with (None: unknown, or it can match empty)."""
    for item in items:
        name, arg = _op(item)
        if name == "LITERAL":
            return frozenset({int(arg)})
        if name == "NOT_LITERAL":
            return frozenset(range(_ALPHABET)) - {int(arg)}
        if name == "ANY":
            return frozenset(range(_ALPHABET))
        if name == "IN":
            return _class_chars(list(arg))
        if name == "AT":
            continue  # an anchor consumes nothing
        if name == "SUBPATTERN":
            return _first_chars(list(arg[-1]))
        if name in {"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"}:
            low, _high, body = arg
            first = _first_chars(list(body))
            if int(low) == 0:
                return None  # may match empty: what follows can start it too
            return first
        if name == "BRANCH":
            out: set[int] = set()
            for b in arg[1]:
                f = _first_chars(list(b))
                if f is None:
                    return None
                out |= f
            return frozenset(out)
        return None
    return None  # the empty sub-pattern


_CATEGORY_RE: Final = {
    "CATEGORY_DIGIT": re.compile(r"\d"),
    "CATEGORY_NOT_DIGIT": re.compile(r"\D"),
    "CATEGORY_SPACE": re.compile(r"\s"),
    "CATEGORY_NOT_SPACE": re.compile(r"\S"),
    "CATEGORY_WORD": re.compile(r"\w"),
    "CATEGORY_NOT_WORD": re.compile(r"\W"),
}


def _class_chars(items: list[object]) -> frozenset[int]:
    negate = False
    out: set[int] = set()
    for item in items:
        name, arg = _op(item)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            out.add(int(arg))
        elif name == "RANGE":
            lo, hi = arg
            out.update(range(int(lo), min(int(hi), _ALPHABET - 1) + 1))
        elif name == "CATEGORY":
            pattern = _CATEGORY_RE.get(str(arg))
            if pattern is None:
                out.update(range(_ALPHABET))
            else:
                out.update(c for c in range(_ALPHABET) if pattern.match(chr(c)))
        else:
            out.update(range(_ALPHABET))
    return frozenset(range(_ALPHABET)) - out if negate else frozenset(out)
