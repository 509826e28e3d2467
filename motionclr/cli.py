"""`motionclr <command>`: argument parsing only; every command calls into the package.

Commands take config files (``--config a.yaml b.yaml``) and dotted overrides
(``train.epochs=5 flow.method=farneback``); unknown keys fail with the valid ones.
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


def cmd_generate(args):
    from motionclr.datasets.synthetic import generator
    cfg = _config(args)
    root = generator(cfg.data.dataset).generate(cfg.data.root, seed=cfg.train.seed)
    print(f"{cfg.data.dataset} dataset in {root}")


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
    p = argparse.ArgumentParser(prog="motionclr", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(name, fn, help_):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--config", nargs="*", default=[], help="YAML config files, in order")
        s.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=5")
        s.set_defaults(fn=fn)
        return s

    with_config("generate", cmd_generate,
                "write an embedded dataset (data.dataset: synthetic | synthetic-objects)")
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


def _dispatch(argv: list[str]) -> int:
    for prefix, target in DELEGATED.items():
        # These parse their own options (argparse's REMAINDER drops leading "--x" flags).
        if tuple(argv[:len(prefix)]) == prefix:
            module, fn = target.split(":")
            return getattr(importlib.import_module(module), fn)(argv[len(prefix):]) or 0
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    bad = [e for e in extra if "=" not in e or e.startswith("-")]
    if bad or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(bad or extra)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    if getattr(args, "config", None):
        # `--config a.yaml key=value`: argparse's nargs="*" swallows the overrides too.
        args.overrides = [c for c in args.config if "=" in c] + list(args.overrides)
        args.config = [c for c in args.config if "=" not in c]
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
    except KeyboardInterrupt:
        print(f"\nmotionclr {command}: interrupted; rerun the same command to resume",
              file=sys.stderr)
        return 130
    except (KeyError, ValueError, OSError, UserError) as e:
        # Config, input, device and storage errors: one clear line, not a traceback.
        print(f"motionclr {command}: error: {error_line(e)}", file=sys.stderr)
        return 2
    finally:
        provenance.stop_capture()


if __name__ == "__main__":
    sys.exit(main())
