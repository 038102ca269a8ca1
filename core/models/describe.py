"""Model introspection for diagrams: the top-level blocks in forward order."""
from __future__ import annotations

from torch import nn


def block_structure(model: nn.Module) -> list[tuple[str, str, int]]:
    """(name, type, parameter count) for each direct child, expanding containers one level
    (a Sequential/ModuleList of blocks shows each block)."""
    rows: list[tuple[str, str, int]] = []
    for name, child in model.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(child) <= 12:
            for sub_name, sub in child.named_children():
                rows.append((f"{name}.{sub_name}", type(sub).__name__, _count(sub)))
        else:
            rows.append((name, type(child).__name__, _count(child)))
    return rows


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
