"""How big a JSON-like value is, about, without serialising it: for limits on what passes through."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def size_of(value: Any, limit: float = math.inf) -> int:
    """About how many bytes `value` takes as JSON. Stops counting once past `limit`, so a call costs
    at most about `limit` steps whatever the value is (a YAML alias bomb, or a list that holds the
    same big string a million times)."""
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, (str, bytes)):
            total += len(item) + 2
        elif item is None or isinstance(item, (bool, float)):
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() * 3 // 10 + 1
        elif isinstance(item, Mapping):
            total += 2 + 2 * len(item)
            if total <= limit:
                stack.extend(item.keys())
                stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2 + len(item)
            if total <= limit:
                stack.extend(item)
        elif isinstance(item, range):
            total += 8 * len(item)
        else:
            total += 16  # a generator or some other object: it is counted when it becomes a list
    return total
