"""`dllm-decode`: generate, list samplers, run an eval grid, and report on a run directory.

    dllm-decode generate --model tiny-llada --sampler threshold --option threshold=0.9 --option gen_length=32 "reverse [ Gemma Murray , Gavin Turner , Eleanor Jenkins ]"
    dllm-decode generate --model tiny-llada -o gen_length=32 --trace --trace-out order.png "copy [ Gemma Murray ]"
    dllm-decode generate --model DIR --prompts prompts.jsonl       # {"input_ids": [...]} or {"prompt": "..."}
    dllm-decode samplers
    dllm-decode samplers creditdecoding                             # every option, its meaning and default
    dllm-decode eval --model tiny-llada --preset quick
    dllm-decode eval --model tiny-llada --suite waiting-line --samplers confidence:k=1,2,4,8 \
        threshold:threshold=0.5,0.7,0.9,1.0 --out runs/baseline
    dllm-decode report runs/baseline
    dllm-decode serve --model tiny-llada --sampler threshold --port 8000   # OpenAI-compatible server

`eval` resumes: rerunning the same command continues where it stopped. Under `torchrun` it shards
batches across processes. Heavy modules (torch, transformers) are imported inside the commands, so
`--help` answers at once.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from .evals.grid import PRESETS, get_preset, parse_grid, parse_option  # torch-free: Sampler is imported in `build`
from .evals.tasks import FORMATS, SUITES

log = logging.getLogger("dllm_decode.cli")

OPTION_SYNTAX = ("sampler option, repeatable. Values parse as int (4), float (0.9), true/false, none, a bracketed "
                 "list or tuple literal ([1, 2], (',',) with quoted strings), else a plain string; see "
                 "`dllm-decode samplers NAME` for a sampler's options")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="checkpoint directory or embedded zoo name (e.g. tiny-llada)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu, or this rank's GPU)")
    p.add_argument("--dtype", default=None, help="float32, bfloat16, float16 (default: fp32 on CPU, bf16 on GPU)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: 1 on CPU, which does not collapse when another process shares the "
                        "cores, see docs/results/threads.md; 0: torch's choice, one per core)")


def _suite(value: str) -> str:
    """A suite name, or `parallelbench:PATH` (checked to exist when the samples load)."""
    if value in SUITES or (value.startswith("parallelbench:") and len(value) > len("parallelbench:")):
        return value
    raise argparse.ArgumentTypeError(f"must be one of {sorted(SUITES)} or parallelbench:PATH, got {value!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dllm-decode", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="decode prompts with one sampler and print text plus accounting")
    _add_model_args(gen)
    gen.add_argument("--sampler", default="threshold", help="a name from `dllm-decode samplers`")
    gen.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE", help=OPTION_SYNTAX)
    gen.add_argument("--prompts", metavar="FILE", help="prompts, one per line, or JSONL lines "
                     '{"prompt": "..."} / {"input_ids": [5, 17, 9]} (token ids: no tokenizer needed)')
    gen.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    gen.add_argument("--trace", action="store_true", help="show the denoising order: each step's commits")
    gen.add_argument("--trace-out", metavar="FILE", help="also draw the order to FILE (.png or .html); implies --trace")
    gen.add_argument("prompt", nargs="*", help="prompts decoded as one batch; `-` reads stdin, one per line "
                     "(same formats as --prompts)")

    sam = sub.add_parser("samplers", help="list samplers with a description and paper; NAME: all its options")
    sam.add_argument("name", nargs="?", help="a sampler name: show every option, its meaning and default")

    ev = sub.add_parser("eval", help="run a grid of sampler configurations over a task suite (resumable)")
    _add_model_args(ev)
    ev.add_argument("--preset", choices=sorted(PRESETS), help="named grid + suite + size; flags below override it")
    ev.add_argument("--samplers", nargs="+", metavar="SPEC",
                    help="specs like confidence:k=1,2,4 threshold:threshold=0.5,0.9 (k = tokens per step; the values "
                         "after `=` are a comma-separated sweep)")
    ev.add_argument("--suite", type=_suite, metavar="SUITE",
                    help=f"task suite: {', '.join(sorted(SUITES))}, or parallelbench:PATH for a local copy of the "
                    "published ParallelBench test files (default: the preset's, or waiting-line)")
    ev.add_argument("--per-length", type=int, help="samples per task and list length (default: preset's or 25)")
    ev.add_argument("--lengths", type=int, nargs="+", help="list lengths / puzzle levels (default: 3 4 5 6)")
    ev.add_argument("--seed", type=int, help="held-out eval seed (default 1234; training uses other streams)")
    ev.add_argument("--fmt", choices=FORMATS, help="prompt format (default: compact)")
    ev.add_argument("--gen-length", type=int, default=32, help="canvas length (32 fits every compact answer)")
    ev.add_argument("--batch-size", type=int, default=32, help="prompts decoded together")
    ev.add_argument("--infill", action="store_true",
                    help="parallelbench only: start the canvas from each record's output_format; decode the [MASK]s")
    ev.add_argument("--slot-tokens", type=int, default=1, help="with --infill: mask tokens per [MASK] (authors: 1)")
    ev.add_argument("--out", default=None, help="run directory (default: runs/<preset>-<model>)")
    ev.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    srv = sub.add_parser("serve", help="OpenAI-compatible HTTP server with step-level batching (needs the "
                         "`serve` extra)")
    _add_model_args(srv)
    srv.add_argument("--sampler", default="threshold", help="default sampler; requests may name another in "
                     '"dllm": {"sampler": ...}')
    srv.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE", help=OPTION_SYNTAX)
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--api-key", default=None, help="require `Authorization: Bearer KEY` on /v1/ endpoints")
    srv.add_argument("--max-queue", type=int, default=64, help="waiting requests beyond this get HTTP 429")
    srv.add_argument("--max-batch", type=int, default=32, help="requests decoded at once (rows in flight)")

    rep = sub.add_parser("report", help="write report.md and PNG plots for a run directory")
    rep.add_argument("run_dir")
    rep.add_argument("--no-plots", action="store_true", help="only the Markdown report (no matplotlib needed)")
    return parser


def set_threads(threads: int | None, device: Any) -> None:
    """1 thread on CPU unless told otherwise: torch's intra-op pool waits for its slowest thread every op, so
    with a neighbour on one core a 2-thread decode collapsed (0.16 s -> 4.8-15 s, docs/results/threads.md)."""
    import torch

    if threads is not None and threads < 0:
        raise ValueError(f"`--threads` must be >= 0 (0: torch's choice), got {threads}")
    if threads is None:
        threads = 1 if torch.device(device).type == "cpu" else 0
    if threads > 0:
        torch.set_num_threads(threads)


def _load(args: argparse.Namespace):
    from .evals.distributed import rank_device
    from .models import load_model

    device = args.device if args.device is not None else rank_device()
    set_threads(args.threads, device)
    return load_model(args.model, device=device, dtype=args.dtype)


def cmd_generate(args: argparse.Namespace) -> int:
    from . import Sampler
    from .prompt_files import gather_prompts

    options = dict(parse_option(o) for o in args.option)
    if args.trace or args.trace_out:
        options["trace"] = True
    sampler = Sampler(args.sampler, **options)  # validate before loading weights
    prompts = gather_prompts(args.prompt, args.prompts, sys.stdin)
    if args.trace_out and not args.trace_out.endswith((".png", ".html")):
        raise ValueError(f"`--trace-out` must end in .png or .html, got {args.trace_out!r}; e.g. order.png")
    model = _load(args)
    result = sampler.generate(model, prompts)
    texts = result.text if result.text is not None else [str(ids) for ids in result.ids]
    if args.json:
        print(json.dumps({"text": texts, "ids": result.ids, "row_nfe": result.row_nfe,
                          "gen_tokens": result.gen_tokens, **result.summary(), "config": result.config}))
    else:
        for i, text in enumerate(texts):
            print(f"[{i}] {text}")
        print("  ".join(f"{k}={v}" for k, v in result.summary().items()))
    if result.trace is not None:
        _show_trace(args, model, result)
    return 0


def _show_trace(args: argparse.Namespace, model: Any, result: Any) -> None:
    from .trace_view import step_view, write_order

    stream = sys.stderr if args.json else sys.stdout  # keep --json output one parseable object
    print("\ndenoising order (position:token committed at each step; _ masked, . end of text)", file=stream)
    print(step_view(result, model.tokenizer, tuple(model.eos_ids)), file=stream)
    if args.trace_out:
        print(f"order picture: {write_order(result, model.tokenizer, args.trace_out)}", file=stream)


def cmd_samplers(args: argparse.Namespace) -> int:
    from . import speculative  # noqa: F401 - registers the ssd / s2d2 / deer presets
    from .samplers.registry import ALIASES, available_samplers, resolve

    if args.name:
        return _describe_sampler(args.name)
    for name in available_samplers():
        canonical, preset = resolve(name)
        if name in ALIASES:
            print(f"{name}: alias of {canonical}")
            continue
        print(f"{name}: {preset.summary or '(no description)'}")
        if preset.paper:
            print(f"    paper: {preset.paper}")
    print("\n`dllm-decode samplers NAME` lists every option of NAME with its meaning and default.")
    return 0


def _describe_sampler(name: str) -> int:
    from .option_docs import describe
    from .samplers.registry import resolve

    canonical, preset = resolve(name)
    rows, needs = describe(name)
    print(f"{canonical}: {preset.summary}" + (f" (alias {name})" if name != canonical else ""))
    if preset.paper:
        print(f"paper: {preset.paper}")
    if needs:
        print(f"needs options: {needs}")
    width = max(len(option) for option, *_ in rows)
    owner = None
    for option, default, meaning, part in rows:
        if part != owner:
            owner = part
            print(f"\n{'shared options' if part == 'shared' else part}:")
        print(f"  {option:<{width}}  = {default!r:<16}  {meaning}")
    print("\nset with -o KEY=VALUE (generate) or NAME:KEY=V1,V2 (eval --samplers)")
    return 0


def _eval_plan(args: argparse.Namespace) -> tuple[list[Any], Any, Path]:
    from .evals.runner import EvalSettings

    preset = get_preset(args.preset) if args.preset else None
    specs_text = args.samplers or (list(preset.samplers) if preset else None)
    if not specs_text:
        raise ValueError("`eval` needs `--preset` or `--samplers`, got neither; e.g. --preset quick")
    if (args.suite or "").startswith("parallelbench:"):
        _refuse_procedural_flags(args)
    settings = EvalSettings(suite=args.suite or (preset.suite if preset else "waiting-line"),
                            seed=1234 if args.seed is None else args.seed,
                            per_length=args.per_length or (preset.per_length if preset else 25),
                            lengths=tuple(args.lengths or (3, 4, 5, 6)), fmt=args.fmt or "compact",
                            gen_length=args.gen_length, batch_size=args.batch_size, infill=args.infill,
                            slot_tokens=args.slot_tokens)
    out = Path(args.out) if args.out else Path("runs") / f"{args.preset or 'custom'}-{Path(args.model).name}"
    return parse_grid(specs_text), settings, out


PROCEDURAL_FLAGS = {"per_length": "sizes", "lengths": "picks the list lengths of", "seed": "draws",
                    "fmt": "words the prompts of"}


def _refuse_procedural_flags(args: argparse.Namespace) -> None:
    """The ParallelBench files fix their samples, lengths and prompts: a flag that only shapes the procedural
    suites would be silently ignored there, so it is an error."""
    for name, verb in PROCEDURAL_FLAGS.items():
        value = getattr(args, name)
        if value is not None:
            flag = "--" + name.replace("_", "-")
            shown = " ".join(map(str, value)) if isinstance(value, list) else value
            raise ValueError(f"`{flag}` {verb} the procedural suites; parallelbench:PATH runs every record of the "
                             f"files as written, got {flag} {shown}; remove it (or pass a smaller copy of the files)")


def cmd_eval(args: argparse.Namespace) -> int:
    from .evals.distributed import init_from_env
    from .evals.report import markdown_table, per_task_markdown
    from .evals.runner import run_eval

    specs, settings, out = _eval_plan(args)
    for spec in specs:  # fail on a bad option before loading weights
        spec.build(settings.gen_length)
    rank, _ = init_from_env()
    model = _load(args)
    try:
        configs = run_eval(model, specs, settings, out, model_id=args.model, progress=not args.no_progress)
    except KeyboardInterrupt:
        if rank == 0:
            print(f"\ninterrupted; every finished batch is in {out / 'records.jsonl'}. Rerun the same command "
                  "to resume.", file=sys.stderr)
        return 130
    if rank == 0:
        print(markdown_table(configs))
        print("\nper task:\n" + per_task_markdown(configs))
        print(f"\nrecords: {out / 'records.jsonl'}\nsummary: {out / 'summary.json'}\n"
              f"plots:   dllm-decode report {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .evals.report import load_summary, markdown_table, write_report

    written = write_report(args.run_dir, plots=not args.no_plots)
    print(markdown_table(load_summary(args.run_dir)["configs"]))
    print("\n" + "\n".join(f"{kind}: {path}" for kind, path in written.items()))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from .serve.app import Server, serve
    except ImportError as err:
        raise ImportError(f"`dllm-decode serve` needs the serve extra ({err.name} is missing); install it with "
                          'pip install -e ".[serve]"') from None
    for flag, value in (("--max-queue", args.max_queue), ("--max-batch", args.max_batch)):
        if value < 1:
            raise ValueError(f"`{flag}` must be >= 1, got {value}")
    options = dict(parse_option(o) for o in args.option)
    model = _load(args)
    server = Server(model, args.model, args.sampler, options, api_key=args.api_key, max_queue=args.max_queue,
                    max_rows=args.max_batch)
    log.warning("serving %s on http://%s:%d/v1 (sampler %s)", args.model, args.host, args.port, args.sampler)
    serve(server, args.host, args.port)
    return 0


COMMANDS = {"generate": cmd_generate, "samplers": cmd_samplers, "eval": cmd_eval, "report": cmd_report,
            "serve": cmd_serve}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code. User errors print one line and return 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except (ValueError, ImportError) as err:
        print(f"dllm-decode {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and cut: stop quietly, as `yes | head` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141


if __name__ == "__main__":
    sys.exit(main())
