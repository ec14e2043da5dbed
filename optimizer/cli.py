"""`autosim` command line: bad input gets one readable line and a non-zero exit, no traceback."""

from __future__ import annotations

import argparse
import sys
from importlib import metadata

from optimizer import commands
from optimizer.errors import CliError
from optimizer.optimize import add_method_options
from optimizer.simulators.client import ServerError, ServerUnavailable
from optimizer.simulators.local_servers import ServerStartError


def _version() -> str:
    try:
        return metadata.version("autosim")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _servers_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", action="append", default=[], metavar="tcp://HOST:PORT",
                   help="use this running render server (repeatable); default: start local ones")
    p.add_argument("--local-servers", type=int, default=1, metavar="N",
                   help="local bpy render servers to start when no --server is given (default 1)")
    p.add_argument("--threads", type=int, default=0,
                   help="Cycles threads per local server (0 = all cores)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="seconds to wait for a render server before giving up (default 120); "
                   "with heartbeats: for its next finished image")
    p.add_argument("--listen", metavar="tcp://ADDR:PORT",
                   help="let render servers join (`autosim serve --connect`) at any time, "
                   "instead of --server; off loopback it needs --curve (this side is then the "
                   "CURVE server: server.key_secret + authorized/)")
    p.add_argument("--heartbeat-s", type=float, default=2.0, metavar="S",
                   help="ping render servers every S seconds; 3 missed in a row (a killed or "
                   "hung server) drop it and its work goes to the others (default 2; 0 = off)")
    p.add_argument("--curve", metavar="DIR", help="CURVE key folder (`autosim keys`) to "
                   "authenticate to --server render servers (local ones use it too)")
    p.add_argument("--max-renders", type=int, default=0, metavar="N",
                   help="local servers: each exits after N images and a fresh one takes its "
                   "place (bounds Blender's memory growth; 0 = never). Servers you start "
                   "take it themselves: `autosim serve --max-renders N`")


def _publish_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--publish", metavar="tcp://ADDR:PORT",
                   help="publish every psi update and the metric for watchers (the add-on's "
                   "Watch a run); off loopback only with --curve DIR")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autosim",
        description="Learn the distribution of a Blender scene simulator (AutoSimulate).")
    parser.add_argument("--version", action="version", version=f"autosim {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="the quick start: local render servers, a short real run")
    demo.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    demo.add_argument("--n", type=int, default=48, help="validation images (default 48)")
    demo.add_argument("--budget-images", type=int, default=1280,
                      help="images rendered while optimising (default 1280)")
    demo.add_argument("--k", type=int, default=16, help="images per iteration (default 16)")
    demo.add_argument("--judge-seeds", type=int, default=2,
                      help="fresh models per psi that judge the result (0: skip; default 2)")
    demo.add_argument("--judge-train-n", type=int, default=256,
                      help="images each judging model trains on (default 256)")
    demo.add_argument("--test-n", type=int, default=96,
                      help="test images rendered from the validation configuration (default 96)")
    demo.add_argument("--device", default="auto")
    demo.add_argument("--no-progress", dest="progress", action="store_false")
    _servers_options(demo)
    _publish_option(demo)

    render = sub.add_parser("render", help="render a dataset folder from a parameter space")
    render.add_argument("--scene", default="clevr")
    render.add_argument("--blend", help="a .blend with autosim bindings (instead of --scene)")
    render.add_argument("--params", help="parameter-space JSON (default: the scene's own)")
    render.add_argument("--preset", default=None,
                        help="a preset of the space, e.g. 'validation' (the default without "
                             "--params); 'none' for the space's own psi")
    render.add_argument("--n", type=int, required=True, help="number of images")
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--size", type=int, default=64, help="image side in pixels")
    render.add_argument("--out", required=True, help="dataset folder to write")
    render.add_argument("--format", choices=("autosim", "yolo", "coco"), default="autosim",
                        help="autosim: images, masks, YOLO labels, items.jsonl, data.yaml; "
                             "yolo: the same without masks (what `yolo train data=` reads); "
                             "coco: images + annotations.json (boxes, RLE instance masks)")
    render.add_argument("--resume", action="store_true",
                        help="continue an interrupted render in --out (same settings)")
    render.add_argument("--val-fraction", type=float, default=0.0, metavar="F",
                        help="put the last F of the items in OUT/val, the rest in OUT/train")
    render.add_argument("--chunk", type=int, default=16,
                        help="images per request (several are in flight per server)")
    render.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar")
    _servers_options(render)

    opt = sub.add_parser("optimize", help="learn psi with a method (AutoSimulate by default)")
    opt.add_argument("--scene", default="clevr",
                     help="clevr (segmentation), placement (YOLO detection), toy (numpy)")
    opt.add_argument("--blend", help="your own .blend with autosim bindings (instead of "
                     "--scene); local servers open it")
    opt.add_argument("--task", choices=("segmentation", "detection", "classifier"),
                     help="the scene's task model (each built-in scene has one; checked if "
                     "given); with --blend: segmentation (default) or detection")
    opt.add_argument("--model", help="detection: an ultralytics yaml (default yolo11n.yaml; "
                     "yolov8s.yaml for a larger one) or a local .pt checkpoint to start from")
    opt.add_argument("--freeze", type=int, default=0,
                     help="detection: freeze the first N layers of the model")
    opt.add_argument("--method", default="autosimulate")
    opt.add_argument("--val", help="validation folder: images/ + masks/ (clevr) or images/ + "
                     "labels/ in YOLO format (placement)")
    opt.add_argument("--params", help="parameter-space JSON to start from (default: the scene's)")
    opt.add_argument("--budget-images", type=int, default=0, help="stop after this many images")
    opt.add_argument("--seed", type=int, default=0)
    opt.add_argument("--device", default="auto", help="auto (CUDA if torch sees it), cpu, cuda")
    opt.add_argument("--out", help="run folder (metrics.jsonl, checkpoint, report.png)")
    opt.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    opt.add_argument("--no-progress", dest="progress", action="store_false",
                     help="no progress bar (logs, CI)")
    opt.add_argument("--fix", action="append", default=[], metavar="GLOB",
                     help="hold parameters matching this name pattern fixed (repeatable; default: "
                     "the scene's own list, placement: object_set, cluster_*; 'none': nothing)")
    _servers_options(opt)
    _publish_option(opt)
    add_method_options(opt)

    bench = sub.add_parser("bench", help="every method side by side on the same budget")
    bench.add_argument("--scene", default="toy", help="toy, clevr or placement")
    bench.add_argument("--blend", help="your own .blend with autosim bindings (with --val/"
                       "--test, or --targets)")
    bench.add_argument("--task", choices=("segmentation", "detection"),
                       help="with --blend: the task model (default segmentation)")
    bench.add_argument("--model", help="placement: the YOLO model yaml (default yolo11n.yaml)")
    bench.add_argument("--freeze", type=int, default=0,
                       help="placement: freeze the model's first N layers")
    bench.add_argument("--fix", action="append", default=[], metavar="GLOB",
                       help="hold parameters matching this name pattern fixed for every method "
                       "(repeatable; default: the scene's own list; 'none': nothing)")
    for key, what in (("val-n", "validation set size"), ("test-n", "test set size"),
                      ("train-n", "images the judging model trains on"),
                      ("epochs", "epochs of the judging model")):
        bench.add_argument(f"--judge-{key}", type=int, help=f"evaluation protocol: {what}")
    bench.add_argument("--methods", default="autosimulate,approx_quadratic,linear,no_val,"
                       "reinforce,bayesopt,random",
                       help="comma-separated method names ('none': only judge the start psi "
                       "and the validation configuration)")
    bench.add_argument("--seeds", type=int, help="seeds per method (default: see --quick)")
    bench.add_argument("--budget-images", type=int,
                       help="images per run (default: toy 3200, clevr and placement 1920)")
    bench.add_argument("--quick", action="store_true",
                       help="small defaults: toy 1920 images x 3 seeds (< 5 min on 2 cores), "
                            "clevr and placement 640 images x 2 seeds")
    bench.add_argument("--size", type=int, default=64, help="image side for rendered scenes")
    bench.add_argument("--device", default="auto")
    bench.add_argument("--out", required=True)
    bench.add_argument("--targets", type=int, default=0, metavar="N",
                       help="draw N hidden target configurations (each moves several free "
                       "parameters away from the start) and render a validation and a test set "
                       "from each; default: the scene's shipped one")
    bench.add_argument("--target-seed", type=int, default=0, metavar="S",
                       help="seed of the drawn targets (choose defaults on one, report on another)")
    bench.add_argument("--val", help="your own validation folder (with --test): the methods "
                       "optimise on it")
    bench.add_argument("--test", help="your own test folder (with --val): the judge scores on it")
    bench.add_argument("--judge-at", default="0.25,0.5,1", metavar="FRACTIONS",
                       help="points of the budget at which each run's psi is judged "
                       "(default 0.25,0.5,1)")
    _servers_options(bench)
    _publish_option(bench)
    add_method_options(bench)  # each method takes the options it has

    ev = sub.add_parser("evaluate", help="judge a parameter space: a fresh model trained on "
                        "images from it, scored on a test folder")
    ev.add_argument("--scene", default="clevr", help="clevr, placement or toy")
    ev.add_argument("--blend", help="your own .blend with autosim bindings (not --scene)")
    ev.add_argument("--task", choices=("segmentation", "detection"),
                    help="with --blend: the task model (default segmentation)")
    ev.add_argument("--params", required=True, help="parameter-space JSON (final_space.json)")
    ev.add_argument("--test", help="test folder in the formats --val accepts (the toy makes "
                    "its own)")
    ev.add_argument("--train-n", type=int, help="images the fresh model trains on")
    ev.add_argument("--epochs", type=int, help="epochs of the fresh model")
    ev.add_argument("--seeds", type=int, default=3, help="judge seeds (default 3)")
    ev.add_argument("--model", help="detection: the YOLO model yaml (default yolo11n.yaml)")
    ev.add_argument("--device", default="auto")
    _servers_options(ev)

    serve = sub.add_parser("serve", help="run a render server in this process (bpy module)")
    serve.add_argument("--scene", default="clevr")
    serve.add_argument("--blend", help="serve this .blend's autosim bindings (not --scene)")
    serve.add_argument("--bind", default="tcp://127.0.0.1:5555")
    serve.add_argument("--connect", metavar="tcp://HOST:PORT",
                       help="join an optimizer's --listen address instead of binding")
    serve.add_argument("--heartbeat-s", type=float, default=2.0,
                       help="with --connect: beat to the optimizer every S seconds")
    serve.add_argument("--max-renders", type=int, default=0, metavar="N",
                       help="exit after N images so a supervisor restarts a fresh process")
    serve.add_argument("--threads", type=int, default=0)
    serve.add_argument("--params")
    serve.add_argument("--curve", metavar="DIR", help="CURVE key folder (`autosim keys`): "
                       "only its authorized clients get answers; required off loopback")
    serve.add_argument("--max-message-mb", type=float, default=256.0,
                       help="largest request accepted, MiB (default 256)")

    keys = sub.add_parser("keys", help="make CURVE keys for an authenticated render farm")
    keys.add_argument("--out", required=True, help="key folder to create")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(getattr(commands, f"cmd_{args.command}")(args) or 0)
    except CliError as exc:
        print(f"autosim {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ServerUnavailable, ServerError, ServerStartError) as exc:
        print(f"autosim {args.command}: render server error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"autosim {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
