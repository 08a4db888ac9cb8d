"""What changed between two definitions, in plain words.

A minimal stand-in: it names the sections that changed. The full describer
("MQL threshold 50 → 70", "fit `size` between 50–5000 → 100–5000") replaces it;
callers rely only on the signature and on one line per change.
"""

from __future__ import annotations

from bot.definition import Definition

_SECTIONS = (
    ("owners", "owners"),
    ("review_every_days", "review period"),
    ("timezone", "time zone"),
    ("fit", "fit criteria"),
    ("intent", "intent signals"),
    ("thresholds", "thresholds"),
    ("commercial", "commercial items"),
    ("handoff", "handoff rules (required fields, SLA, routing)"),
    ("reasons", "rejection reasons"),
    ("digest", "digest"),
    ("target", "target"),
)


def describe(old: Definition, new: Definition) -> list[str]:
    """One line per change from `old` to `new` (empty: they judge alike)."""
    return [
        f"{label} changed"
        for attribute, label in _SECTIONS
        if getattr(old, attribute) != getattr(new, attribute)
    ]
