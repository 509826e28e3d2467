"""`motionclr <command>`: argument parsing only; every command calls into the package.

Commands take config files (``--config a.yaml b.yaml``: existing .yaml/.yml paths) and dotted
overrides (``train.epochs=5 flow.method=farneback``); unknown keys fail with the valid ones.
A word that is neither continues the previous override's value, so a value with spaces
survives the shell's (and make's) word splitting: ``method.terms={loss_mx: 0.5, x: 0}``.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from motionclr.errors import UserError


def _config(args):
    from motionclr.config import load_config
    return load_config(args.config, args.overrides)


def _size(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    if not (sep and w.isdigit() and h.isdigit() and int(w) >= 16 and int(h) >= 16):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT of at least 16x16, got {text!r}")
    return int(w), int(h)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def cmd_generate(args):
    from motionclr.datasets.synthetic import generator
    cfg = _config(args)
    sizes = {k: v for k, v in (("groups", args.groups), ("clips", args.clips),
                               ("n_frames", args.frames), ("size", args.size)) if v is not None}
    root = generator(cfg.data.dataset).generate(cfg.data.root, seed=cfg.train.seed, **sizes)
    print(f"{cfg.data.dataset} dataset in {root}")


def cmd_config_show(args):
    from pathlib import Path

    from motionclr.config import describe_config, load_config
    files = list(args.config)
    if args.run:
        saved = Path(args.run) / "config.yaml"
        if not saved.is_file():
            raise FileNotFoundError(f"{args.run} has no config.yaml")
        files = [str(saved)] + files
    origin: dict = {}
    cfg = load_config(files, args.overrides, origin)
    print("\n".join(describe_config(cfg, origin)))


def cmd_cache(args):
    from motionclr.pipeline import cache_admin
    if args.action == "ls":
        print("\n".join(cache_admin.format_ls(cache_admin.list_stages(args.cache))))
    else:
        print("\n".join(cache_admin.run_gc(args.cache, args.unused_days, args.unfinished_days,
                                            dry_run=args.dry_run)))


def cmd_flow(args):
    from motionclr.pipeline.flow_stage import flow_outcome, run_flow_stage
    cfg = _config(args)
    if args.shard:
        cfg.pipeline.shard = args.shard
    out = run_flow_stage(cfg, retry_failed=args.retry_failed)
    print(out)
    lines, error = flow_outcome(cfg, out)  # "N packed, M failed" and the top reasons
    print("\n".join(lines))
    if error:
        print(f"motionclr flow: error: {error}", file=sys.stderr)
        raise SystemExit(1)


def cmd_index(args):
    from motionclr.pipeline.index_stage import run_index_stage
    from motionclr.pipeline.stages import find_flow_stage
    cfg = _config(args)
    print(run_index_stage(cfg, find_flow_stage(cfg)))


def cmd_pretrain(args):
    from motionclr.pretrain import pretrain
    print(pretrain(_config(args)))


EVAL_PROTOCOLS = {
    "retrieval": "motionclr.eval.retrieval:run_retrieval",
    "linear": "motionclr.eval.linear:run_linear",
    "finetune": "motionclr.eval.finetune:run_finetune",
    "knn": "motionclr.eval.knn:run_knn",
    "val-retrieval": "motionclr.eval.val_retrieval:run_val_recall",
    "retrieval-figure": "motionclr.eval.retrieval_protocols:retrieval_figure",
    "report": "motionclr.eval.report:build_report",
}


def cmd_eval(args):
    module, fn = EVAL_PROTOCOLS[args.protocol].split(":")
    run_fn = getattr(importlib.import_module(module), fn)
    if args.protocol == "report":
        print(run_fn(args.run))
        return
    out = run_fn(args.run, args.overrides, device=args.device)
    if args.protocol == "retrieval-figure":
        print(out)


def cmd_verify(args):
    from motionclr.pipeline.verify import verify_cache
    from motionclr.pipeline.verify import stage_failures
    if args.repair:
        from motionclr.pipeline.repair import repair_stage
        for stage in verify_cache(args.cache, checksums=False):
            if (Path(stage) / "manifest.json").is_file():
                fixed = repair_stage(stage, args.overrides)
                print(f"{stage}: repaired {len(fixed['videos'])} video(s), checksum file "
                      "rewritten" if fixed["checksums"] else f"{stage}: nothing to repair")
    elif args.overrides:
        raise ValueError("overrides are for --repair (e.g. flow.device=cuda)")
    report = verify_cache(args.cache, checksums=not args.quick)
    bad = 0
    for stage, problems in report.items():
        print(f"{stage}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        for p in problems:
            print(f"  - {p}")
        for line in stage_failures(stage):  # recorded failed videos: not damage, but shown
            print(f"  {line}")
        bad += len(problems)
    if bad:
        raise SystemExit(1)


def cmd_demo(args):
    from motionclr.demo import run_demo
    run_demo(args.config, args.overrides)


def build_parser() -> argparse.ArgumentParser:
    from motionclr import __version__
    p = argparse.ArgumentParser(prog="motionclr", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"motionclr {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(name, fn, help_):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--config", nargs="*", default=[], help="YAML config files, in order")
        s.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=5")
        s.set_defaults(fn=fn)
        return s

    s = with_config("generate", cmd_generate,
                    "write an embedded dataset (data.dataset: synthetic | synthetic-objects)")
    s.add_argument("--groups", type=_positive,
                   help="groups per class (default 6; a third are test)")
    s.add_argument("--clips", type=_positive, help="clips per group (default 4)")
    s.add_argument("--frames", type=_positive, help="frames per video (default 32; synthetic-objects 48)")
    s.add_argument("--size", type=_size, help="WIDTHxHEIGHT (default 128x96)")
    s = with_config("config", cmd_config_show,
                    "config show: the resolved config, each value with where it came from")
    s.add_argument("action", choices=["show"])
    s.add_argument("--run", default="", help="start from this run's saved config.yaml")
    s = sub.add_parser("cache", help="cache ls | gc: stages, sizes, last use; remove unused")
    s.add_argument("action", choices=["ls", "gc"])
    s.add_argument("cache", nargs="?", default="cache", help="cache root (default ./cache)")
    s.add_argument("--dry-run", action="store_true", help="gc: only say what would go")
    s.add_argument("--unused-days", type=float, default=None,
                   help="gc: also remove finished stages unused for this many days")
    s.add_argument("--unfinished-days", type=float, default=1.0,
                   help="gc: remove unfinished stages idle this long (default 1)")
    s.set_defaults(fn=cmd_cache)
    s = with_config("flow", cmd_flow, "decode + flow + HDF5 shards (cached)")
    s.add_argument("--shard", default="", help="i/n: only slice i of n (job arrays)")
    s.add_argument("--retry-failed", action="store_true",
                   help="compute the videos recorded as failed again")
    with_config("index", cmd_index, "motion index (MDS, tubelets, segments) beside the shards")
    with_config("pretrain", cmd_pretrain, "pretrain a method on cached shards")
    with_config("demo", cmd_demo, "generate -> flow -> pretrain -> retrieval on CPU")
    s = sub.add_parser("verify", help="check shards against their manifest")
    s.add_argument("cache", help="a flow stage directory or a cache root")
    s.add_argument("--quick", action="store_true", help="skip the checksums")
    s.add_argument("--repair", action="store_true",
                   help="recompute the damaged videos from their sources, then verify")
    s.add_argument("overrides", nargs="*", help="with --repair, e.g. flow.device=cuda")
    s.set_defaults(fn=cmd_verify)
    s = sub.add_parser("eval", help="evaluate a run")
    s.add_argument("protocol", choices=list(EVAL_PROTOCOLS))
    s.add_argument("--run", required=True, help="run directory with checkpoint.pt")
    s.add_argument("--device", default="auto",
                   help="auto (CUDA when present; the default), cpu, cuda or cuda:N")
    s.add_argument("overrides", nargs="*", help="dotted overrides, e.g. eval.num_clips=5")
    s.set_defaults(fn=cmd_eval)
    s = sub.add_parser("bench", help="benchmarks: flow | io | methods | gpu")
    s.add_argument("which", choices=["flow", "io", "methods", "gpu"])
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(fn=None)  # dispatched in main() through DELEGATED
    s = sub.add_parser("viz", help="flow colour-wheel images / RGB|flow strips")
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(fn=None)
    return p


DELEGATED = {("viz",): "motionclr.flow.viz:main", ("bench", "flow"): "motionclr.bench.flow:main",
             ("bench", "io"): "motionclr.bench.io:main",
             ("bench", "methods"): "motionclr.bench.methods:main",
             ("bench", "gpu"): "motionclr.bench.gpu:main"}


def _files_and_overrides(parser, args, extra: list[str]) -> None:
    """Sort the free words into config files and overrides (motionclr.config.split_cli_args).

    argparse scatters them: ``--config``'s nargs="*" swallows what follows it, and words
    after another option land in ``extra``; their order within each list is kept.
    """
    from motionclr.config import split_cli_args
    unknown = [e for e in extra if e.startswith("--") or (e.startswith("-") and e[1:2].isalpha())]
    if unknown or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if not hasattr(args, "overrides"):
        return
    words = list(getattr(args, "config", [])) + list(args.overrides) + list(extra)
    try:
        files, args.overrides = split_cli_args(words)
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    if hasattr(args, "config"):
        args.config = files
    elif files:
        parser.error(f"{args.command} takes overrides only (the run's config.yaml is the "
                     f"base), not config files: {' '.join(files)}")


def _dispatch(argv: list[str]) -> int:
    for prefix, target in DELEGATED.items():
        # These parse their own options (argparse's REMAINDER drops leading "--x" flags).
        if tuple(argv[:len(prefix)]) == prefix:
            module, fn = target.split(":")
            return getattr(importlib.import_module(module), fn)(argv[len(prefix):]) or 0
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    _files_and_overrides(parser, args, extra)
    args.fn(args)
    return 0


def error_line(e: BaseException) -> str:
    """One line for an error a user can act on (the first line of a longer message is the
    diagnosis; a diff or list may follow it)."""
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    if isinstance(e, OSError) and e.strerror and not isinstance(e, UserError):
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    msg = str(e)
    if "Original Traceback" in msg:  # raised in a DataLoader worker: its own message
        msg = msg.rstrip().splitlines()[-1].split(": ", 1)[-1]
    return msg


def main(argv: list[str] | None = None) -> int:
    """Every command, delegated ones (viz, bench) included, ends in one of: exit 0; one
    ``motionclr <command>: error: ...`` line and exit 2; ``interrupted`` and exit 130."""
    from motionclr import interrupts, provenance
    argv = list(sys.argv[1:] if argv is None else argv)
    words = [a for a in argv if not a.startswith("-")][:2]
    command = " ".join(words if words[:1] == ["bench"] else words[:1])
    provenance.start_capture(argv)
    interrupts.install()
    try:
        return _dispatch(argv)
    except Exception as e:
        # A Ctrl-C can surface as another exception: raised inside torch.save, the zip
        # writer's cleanup fails and replaces the KeyboardInterrupt with a RuntimeError.
        if interrupts.pending():
            print(f"\nmotionclr {command}: interrupted; rerun the same command to resume",
                  file=sys.stderr)
            return 130
        if not isinstance(e, (KeyError, ValueError, OSError, UserError)):
            raise
        # Config, input, device and storage errors: one clear line, not a traceback.
        print(f"motionclr {command}: error: {error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nmotionclr {command}: interrupted; rerun the same command to resume",
              file=sys.stderr)
        return 130
    finally:
        provenance.stop_capture()


if __name__ == "__main__":
    sys.exit(main())
