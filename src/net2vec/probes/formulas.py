"""Logical formulas of labels (docs/compexp.md): build, print, parse, evaluate.

A formula is a label, or ``(left OP right)`` with OP one of ``OR``, ``AND``, ``AND NOT``. The
beam search only builds left-deep formulas, ``((c1 op2 c2) op3 c3)``, stored as a
:class:`Formula` (the labels and the operators that attach them). Printed formulas name each
label by its label.csv name; a name that contains a space, a parenthesis or a quote, or that is
an operator word, is written in double quotes (``"traffic light"``, inner quotes doubled).
:func:`parse` reads any formula of the grammar (also nested on the right) into a tree of
tuples that :func:`evaluate` turns into a mask.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

OPERATORS = ("OR", "AND", "AND NOT")
OR, AND, AND_NOT = 0, 1, 2
_WORDS = {"OR", "AND", "NOT"}
_TOKEN = re.compile(r'\s*(\(|\)|"(?:[^"]|"")*"|[^\s()"]+)')


@dataclass(frozen=True)
class Formula:
    """A left-deep formula: ``labels[0]``, then ``ops[i-1]`` with ``labels[i]`` for i ≥ 1."""

    labels: tuple[int, ...]
    ops: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len(self.ops) != max(len(self.labels) - 1, 0):
            raise ValueError(f"formula: {len(self.labels)} labels need {len(self.labels) - 1} ops")

    def __len__(self) -> int:
        return len(self.labels)

    def extend(self, op: int, label: int) -> Formula:
        """``(self op label)``."""
        return Formula(self.labels + (int(label),), self.ops + (int(op),))

    def tree(self):
        """The formula as a parse tree (see :func:`parse`)."""
        node = ("label", self.labels[0])
        for op, label in zip(self.ops, self.labels[1:]):
            node = (OPERATORS[op], node, ("label", label))
        return node

    def key(self) -> tuple:
        """A key equal for formulas equal up to the order of an OR or AND chain (the package
        ``compositional-explanations`` merges these, e.g. ``(a OR b)`` and ``(b OR a)``)."""
        return _canonical(self.tree())

    def text(self, names: Sequence[str]) -> str:
        """The formula in the grammar, labels by name: ``((water OR river) AND NOT blue)``."""
        return to_text(self.tree(), names)


def _canonical(node) -> tuple:
    if node[0] == "label":
        return node
    if node[0] == "AND NOT":
        return ("AND",) + tuple(sorted(_chain(node[1], "AND") + [("NOT", _canonical(node[2]))]))
    return (node[0],) + tuple(sorted(_chain(node, node[0])))


def _chain(node, op: str) -> list:
    if node[0] == op or (op == "AND" and node[0] == "AND NOT"):
        if node[0] == "AND NOT":
            return _chain(node[1], op) + [("NOT", _canonical(node[2]))]
        return _chain(node[1], op) + _chain(node[2], op)
    return [_canonical(node)]


def quote(name: str) -> str:
    """A label name as written in a formula."""
    if not name or name.upper() in _WORDS or re.search(r'[\s()"]', name):
        return '"' + name.replace('"', '""') + '"'
    return name


def to_text(node, names: Sequence[str]) -> str:
    """A parse tree in the grammar."""
    if node[0] == "label":
        return quote(str(names[node[1]]))
    return f"({to_text(node[1], names)} {node[0]} {to_text(node[2], names)})"


def parse(text: str, names: Sequence[str]):
    """A formula string -> parse tree: ``("label", index)`` or ``(op, left, right)``.

    Raises ValueError naming the formula for an unknown label or a malformed string."""
    index = {str(n): i for i, n in enumerate(names)}
    tokens, end = [], 0
    for match in _TOKEN.finditer(text):
        if match.start() != end:
            break
        tokens.append(match.group(1))
        end = match.end()
    if text[end:].strip():
        raise ValueError(f"formula {text!r}: unreadable at {text[end:]!r}")
    node, rest = _parse(tokens, index, text)
    if rest:
        raise ValueError(f"formula {text!r}: unexpected {' '.join(rest)!r} at the end")
    return node


def _parse(tokens: list[str], index: dict[str, int], text: str):
    if not tokens:
        raise ValueError(f"formula {text!r}: ends early")
    head, rest = tokens[0], tokens[1:]
    if head != "(":
        name = head[1:-1].replace('""', '"') if head.startswith('"') else head
        if name not in index:
            raise ValueError(f"formula {text!r}: unknown label {name!r}")
        return ("label", index[name]), rest
    left, rest = _parse(rest, index, text)
    op = "AND NOT" if rest[:2] == ["AND", "NOT"] else (rest[0] if rest else "")
    if op not in OPERATORS:
        raise ValueError(f"formula {text!r}: expected OR, AND or AND NOT, got {op!r}")
    right, rest = _parse(rest[len(op.split()) :], index, text)
    if not rest or rest[0] != ")":
        raise ValueError(f"formula {text!r}: missing ')'")
    return (op, left, right), rest[1:]


def evaluate(node, mask: Callable[[int], np.ndarray]) -> np.ndarray:
    """The formula's mask from ``mask(label)`` (boolean arrays of one shape)."""
    if node[0] == "label":
        return np.asarray(mask(node[1]), bool)
    left, right = evaluate(node[1], mask), evaluate(node[2], mask)
    if node[0] == "OR":
        return left | right
    return left & right if node[0] == "AND" else left & ~right


def length(node) -> int:
    """Number of labels in a parse tree."""
    return 1 if node[0] == "label" else length(node[1]) + length(node[2])
