"""Label selectors in their string form (``team=build,env in (ci,main),!pr``): parse and match.

The same syntax as ``kubectl get -l``. Parsing fails with a ValueError that says what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Mapping

Op = Literal["=", "!=", "in", "notin", "exists", "!exists"]

_KEY = r"(?:[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?"
_VALUE = r"(?:[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?)?"
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s+\(([^()]*)\)$")
_CMP = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*({_VALUE})$")
_EXISTS = re.compile(rf"^(!?)\s*({_KEY})$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: Op
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op in ("=", "in"):
            return self.key in labels and labels[self.key] in self.values
        return self.key not in labels or labels[self.key] not in self.values  # != and notin


@dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """All requirements hold (an empty selector matches everything, as in Kubernetes)."""
        return all(r.matches(labels or {}) for r in self.requirements)

    def __str__(self) -> str:
        parts = []
        for r in self.requirements:
            vals = ",".join(sorted(r.values))
            parts.append({"exists": r.key, "!exists": f"!{r.key}", "=": f"{r.key}={vals}",
                          "!=": f"{r.key}!={vals}"}.get(r.op, f"{r.key} {r.op} ({vals})"))
        return ",".join(parts)


def _split(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"label selector {text!r}: unbalanced ')'")
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if depth != 0:
        raise ValueError(f"label selector {text!r}: unbalanced '('")
    parts.append(current)
    return [p.strip() for p in parts]


def parse(text: str) -> Selector:
    text = (text or "").strip()
    if not text:
        return Selector(())
    reqs = []
    for part in _split(text):
        if m := _SET.match(part):
            values = frozenset(v.strip() for v in m.group(5).split(",") if v.strip())
            if not values or not all(re.fullmatch(_VALUE, v) for v in values):
                raise ValueError(f"label selector {text!r}: bad value list in {part!r}")
            op: Op = "in" if m.group(4) == "in" else "notin"
            reqs.append(Requirement(m.group(1), op, values))
        elif m := _CMP.match(part):
            op = "!=" if m.group(4) == "!=" else "="
            reqs.append(Requirement(m.group(1), op, frozenset([m.group(5)])))
        elif m := _EXISTS.match(part):
            reqs.append(Requirement(m.group(2), "!exists" if m.group(1) else "exists"))
        else:
            raise ValueError(f"label selector {text!r}: cannot parse {part!r} (expected key=value, "
                             "key!=value, key in (a,b), key notin (a,b), key or !key)")
    return Selector(tuple(reqs))
