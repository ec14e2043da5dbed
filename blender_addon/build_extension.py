"""Build the AutoSim Blender extension zip (plain Python; no network, no bpy import).

    python -m blender_addon.build_extension --out DIR [--wheels DIR_OR_WHEEL ...] [--legacy]
    python -m blender_addon.build_extension --validate

Stages a copy of blender_addon/ with protocol/ vendored under `_vendor/` and the given pyzmq
wheels under `wheels/` (listed in the staged manifest's `wheels`, with the matching
`platforms`), validates it and runs the `build` of the extension tooling that ships inside the
bpy wheel (`<bpy>/<ver>/scripts/addons_core/bl_pkg/cli/blender_ext.py`). `--legacy` also
writes `autosim-<version>-legacy.zip` (everything under `autosim/`) for Blender < 4.2, which
installs it with Preferences > Add-ons > Install.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Sequence
from pathlib import Path

ADDON_DIR = Path(__file__).resolve().parent
PROTOCOL_DIR = ADDON_DIR.parent / "protocol"
MANIFEST = "blender_manifest.toml"
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".*", "*.zip", "_vendor", "wheels",
                               "build_extension.py")
# Wheel platform tag fragments -> Blender platform names.
_PLATFORMS = (("manylinux", "x86_64", "linux-x64"), ("manylinux", "aarch64", "linux-arm64"),
              ("musllinux", "x86_64", "linux-x64"), ("win_amd64", "", "windows-x64"),
              ("win_arm64", "", "windows-arm64"), ("macosx", "arm64", "macos-arm64"),
              ("macosx", "x86_64", "macos-x64"), ("macosx", "universal2", "macos-arm64"))


class BuildError(RuntimeError):
    """The extension could not be staged, validated or built (message says why)."""


def blender_ext_script() -> Path:
    """The extension tooling script shipped in the bpy wheel ($AUTOSIM_BLENDER_EXT overrides)."""
    env = os.environ.get("AUTOSIM_BLENDER_EXT")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("bpy")  # locates the package without importing it
    roots = list(spec.submodule_search_locations or []) if spec else []
    if spec and spec.origin and not roots:
        roots = [os.path.dirname(spec.origin)]
    for root in roots:
        hits = sorted(glob.glob(os.path.join(root, "*", "scripts", "addons_core", "bl_pkg",
                                             "cli", "blender_ext.py")))
        if hits:
            return Path(hits[-1])
    raise BuildError("cannot find blender_ext.py: install the bpy wheel or set "
                     "AUTOSIM_BLENDER_EXT to the script's path")


def manifest_info(path: Path = ADDON_DIR / MANIFEST) -> dict:
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def find_wheels(paths: Sequence[str | Path]) -> list[Path]:
    """Wheel files from files and folders (a folder contributes its pyzmq-*.whl)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(p.glob("pyzmq-*.whl"))
        elif p.is_file() and p.suffix == ".whl":
            out.append(p)
        else:
            raise BuildError(f"--wheels {p}: not a .whl file or a folder")
    return out


def wheel_platforms(wheels: Sequence[Path]) -> list[str]:
    """Blender platforms the wheels cover ([] when any is pure Python: all platforms)."""
    found: list[str] = []
    for w in wheels:
        tag = w.name[:-4].split("-")[-1]
        if tag == "any":
            return []
        for frag, arch, name in _PLATFORMS:
            if frag in tag and arch in tag and name not in found:
                found.append(name)
    return found


def _set_list(text: str, key: str, values: Sequence[str]) -> str:
    """Replace (or drop, for no values) a top-level `key = [...]` of the manifest text."""
    pattern = re.compile(rf"^{key}\s*=\s*\[[^\]]*\]\s*$", re.M)
    line = f"{key} = [{', '.join(json.dumps(v) for v in values)}]"
    if pattern.search(text):
        return pattern.sub(line if values else "", text)
    if not values:
        return text
    head, sep, tail = text.partition("\n[")  # before the first table
    return f"{head.rstrip()}\n{line}\n{sep}{tail}" if sep else f"{text.rstrip()}\n{line}\n"


def stage(dest: str | Path, wheels: Sequence[str | Path] = ()) -> Path:
    """Copy the add-on, vendored protocol and wheels into `dest` (created; must not exist)."""
    dest = Path(dest)
    if dest.exists():
        raise BuildError(f"staging folder {dest} already exists")
    if not PROTOCOL_DIR.is_dir():
        raise BuildError(f"protocol package not found at {PROTOCOL_DIR}")
    shutil.copytree(ADDON_DIR, dest, ignore=_SKIP)
    shutil.copytree(PROTOCOL_DIR, dest / "_vendor" / "protocol", ignore=_SKIP)
    wheel_files = find_wheels(wheels)
    names = []
    if wheel_files:
        (dest / "wheels").mkdir()
        for w in wheel_files:
            shutil.copy2(w, dest / "wheels" / w.name)
            names.append(f"./wheels/{w.name}")
    text = (dest / MANIFEST).read_text("utf-8")
    text = _set_list(text, "wheels", names)
    text = _set_list(text, "platforms", wheel_platforms(wheel_files))
    (dest / MANIFEST).write_text(text, "utf-8")
    return dest


def _run(args: list[str]) -> str:
    proc = subprocess.run([sys.executable, str(blender_ext_script()), *args],
                          capture_output=True, text=True, cwd=tempfile.gettempdir())
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or "FATAL_ERROR" in out:
        raise BuildError(f"blender_ext {args[0]} failed: {out}")
    return out


def validate(path: str | Path) -> str:
    """Run the tooling's `validate` on a staged folder or a built zip; returns its output."""
    return _run(["validate", str(path)])


def build(out_dir: str | Path, wheels: Sequence[str | Path] = (), legacy: bool = False) -> Path:
    """Stage, validate and build; returns the extension zip (legacy zip next to it if asked)."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    info = manifest_info()
    zip_path = out_dir / f"{info['id']}-{info['version']}.zip"
    with tempfile.TemporaryDirectory(prefix="autosim-ext-") as tmp:
        staged = stage(Path(tmp) / info["id"], wheels)
        validate(staged)
        if zip_path.exists():
            zip_path.unlink()
        _run(["build", "--source-dir", str(staged), "--output-filepath", str(zip_path)])
        validate(zip_path)
        if legacy:
            build_legacy_zip(staged, out_dir / f"{info['id']}-{info['version']}-legacy.zip",
                             info["id"])
    return zip_path


def build_legacy_zip(staged: Path, path: Path, folder: str) -> Path:
    """A zip with everything under `folder/`, the layout legacy add-on installs expect."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(staged.rglob("*")):
            if file.is_file():
                zf.write(file, f"{folder}/{file.relative_to(staged).as_posix()}")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m blender_addon.build_extension",
                                description="Build the AutoSim Blender extension zip.")
    p.add_argument("--out", help="output folder for the zip(s)")
    p.add_argument("--wheels", action="append", default=[], metavar="PATH",
                   help="a pyzmq .whl or a folder of them to bundle (repeatable); never "
                        "downloaded: without it the zip has no wheels")
    p.add_argument("--legacy", action="store_true",
                   help="also write a legacy add-on zip for Blender < 4.2")
    p.add_argument("--validate", action="store_true",
                   help="only stage and validate, build nothing")
    args = p.parse_args(argv)
    try:
        if args.validate:
            with tempfile.TemporaryDirectory(prefix="autosim-ext-") as tmp:
                print(validate(stage(Path(tmp) / "autosim", args.wheels)))
            return 0
        if not args.out:
            p.error("--out is required (or --validate)")
        zip_path = build(args.out, args.wheels, legacy=args.legacy)
    except BuildError as exc:
        print(f"build_extension: {exc}", file=sys.stderr)
        return 1
    print(zip_path)
    if args.legacy:
        print(zip_path.with_name(zip_path.stem + "-legacy.zip"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
