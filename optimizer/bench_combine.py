"""One bench from several: runs of different methods (or seeds) measured apart, on the same
targets and references, summarised as if they had run together. A bench of four methods on
clevr takes hours; it can be split across hosts or sessions and still be paired run by run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from optimizer.errors import CliError

SAME = ("scene", "budget_images", "seeds", "fractions", "references")


def _load(folder: Path) -> dict[str, Any]:
    path = folder / "bench.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CliError(f"{path}: no bench.json (is {folder} an `autosim bench --out` folder?)"
                       ) from None
    except (OSError, ValueError) as e:
        raise CliError(f"{path}: not a readable bench.json ({e})") from None
    if not isinstance(data, dict) or not all(k in data for k in (*SAME, "runs")):
        raise CliError(f"{path}: not a bench.json (it lacks {', '.join(SAME)} or runs)")
    return data


def _options_differ(benches: list[dict[str, Any]], folders: list[Path]) -> str:
    """'' or the first method whose recorded options differ between two folders, and how."""
    seen: dict[str, tuple[Path, dict[str, Any]]] = {}
    for folder, data in zip(folders, benches):
        for method, opts in (data.get("options") or {}).items():
            if method not in seen:
                seen[method] = (folder, opts)
                continue
            first, before = seen[method]
            diff = sorted(k for k in set(before) | set(opts) if before.get(k) != opts.get(k))
            if diff:
                k = diff[0]
                return (f"{method} ran with other options in {folder} than in {first} ({k}: "
                        f"{opts.get(k)!r} vs {before.get(k)!r})")
    return ""


def combine(folders: list[Path], out: Path, labels: list[str] | None = None) -> dict[str, Any]:
    """The merged result of several bench folders; they must share the scene, budget, seeds,
    judge points and the references themselves (copy one run's targets/ into the others' --out
    before running them), and no run may appear twice. out may not be one of them: its own
    bench.md and bench.json would be overwritten by the merge. labels (one per folder) name
    each folder's methods "method (label)": one method under two settings then pairs run by
    run like two methods, which is how an option is compared with the defaults."""
    if len(folders) < 2:
        raise CliError("--combine needs at least two bench folders")
    if labels is not None:
        labels = [label.strip() for label in labels]
        if len(labels) != len(folders) or len(set(labels)) != len(labels) or not all(labels):
            raise CliError(f"--labels needs one distinct, non-empty label per folder: "
                           f"{len(folders)} folder(s), labels {labels}")

    def named(method: str, i: int) -> str:
        return method if labels is None else f"{method} ({labels[i]})"

    if out.resolve() in {f.resolve() for f in folders}:
        raise CliError(f"--out {out} is one of the folders to combine; give a new folder")
    benches = [_load(f) for f in folders]
    first = benches[0]
    for folder, data in zip(folders[1:], benches[1:]):
        for key in SAME:
            if data[key] != first[key]:
                raise CliError(f"{folder}: not the same {key} as {folders[0]}; only benches "
                               "judged on the same references combine")
    if labels is None and (differ := _options_differ(benches, folders)):
        raise CliError(f"{differ}; give --labels to compare them as two rows")
    runs, seen, methods, options = [], set(), [], {}
    for i, (folder, data) in enumerate(zip(folders, benches)):
        for method, opts in (data.get("options") or {}).items():
            options[named(method, i)] = opts
        for run in data["runs"]:
            run = {**run, "method": named(run["method"], i)}
            key = (run["method"], run["target"], run["seed"])
            if key in seen:
                raise CliError(f"{folder}: {key[0]} seed {key[2]} on {key[1]} is in another "
                               "folder too (--labels tells settings of one method apart)")
            seen.add(key)
            runs.append(run)
            if run["method"] not in methods:
                methods.append(run["method"])
    return {**{k: first[k] for k in SAME}, "metric": first.get("metric", "metric"),
            "targets": len(first["references"]), "target_seed": first.get("target_seed"),
            "device": ", ".join(sorted({str(d.get("device")) for d in benches})),
            "methods": methods, "options": options, "combined_from": [str(f) for f in folders],
            "runs": runs}
