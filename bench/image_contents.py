"""What the task image's environment holds: the distributions `pip install ".[container]"` brings in (the
builder stage's one pip command), resolved from this environment's metadata (installed from the same
constraints), with their installed sizes. No Docker engine is needed; it prints the largest and the total.

    python bench/image_contents.py [--extra container] [--top 15]
"""

from __future__ import annotations

import argparse
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def closure(root: str, extras: set[str]) -> dict[str, metadata.Distribution]:
    """The distributions ``root[extras]`` needs, following requirements whose markers hold here."""
    found: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [(canonicalize_name(root), frozenset(extras))]
    while pending:
        key, wanted = pending.pop()
        if (key, wanted) in seen:
            continue
        seen.add((key, wanted))
        distribution = found.setdefault(key, metadata.distribution(key))
        environments = [{"extra": extra} for extra in wanted] or [{"extra": ""}]
        for requirement in map(Requirement, distribution.requires or []):
            if requirement.marker is None or any(requirement.marker.evaluate(env) for env in environments):
                pending.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return found


def installed_bytes(distribution: metadata.Distribution) -> int:
    total = 0
    for file in distribution.files or []:
        path = Path(distribution.locate_file(file))
        if path.is_file():
            total += path.stat().st_size
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", action="append", default=["container"])
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    distributions = closure("nlp-workflow", set(args.extra))
    sizes = sorted(((installed_bytes(d), name) for name, d in distributions.items()), reverse=True)
    total = sum(size for size, _ in sizes)
    print(f"task image environment: {len(sizes)} distributions, {total / 2**20:,.0f} MiB installed")
    for size, name in sizes[: args.top]:
        print(f"  {name:<28} {size / 2**20:>8,.1f} MiB  {100 * size / total:5.1f} %")
    print("  airflow in it:", "yes" if "apache-airflow" in distributions else "no")


if __name__ == "__main__":
    main()
