"""Draw the stages from the imports: for each stage package of `searcher`, the stages (and the
shared top-level modules) its modules import, as a Markdown table. README's "How the code is
laid out" holds its output; tests/test_layout.py checks the two agree.

    python scripts/layout.py
"""

from __future__ import annotations

import grimp

STAGES = ("cli", "web", "integrations", "quality", "cluster", "index", "search", "storage", "sources", "encoding", "readers")


def stage_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "searcher"


def drawing() -> str:
    graph = grimp.build_graph("searcher")
    uses: dict[str, set[str]] = {stage: set() for stage in STAGES}
    for module in graph.modules:
        stage = stage_of(module)
        if stage not in uses:
            continue
        for imported in graph.find_modules_directly_imported_by(module):
            other = stage_of(imported)
            if other != stage and other != "searcher":
                uses[stage].add(other)
    order = {name: i for i, name in enumerate(STAGES)}
    lines = ["| stage | imports from |", "| --- | --- |"]
    for stage in STAGES:
        below = sorted(uses[stage], key=lambda name: (name not in order, order.get(name, 0), name))
        lines.append(f"| `{stage}` | {', '.join(f'`{name}`' for name in below) or '(nothing else of searcher)'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(drawing())
