"""The ``aiqc`` command line.

    aiqc run CONFIG.yaml [key=value +key=value ~key ...] [-m] [--output-dir DIR] [--allow-module M ...]
    aiqc run CONFIG.yaml --help          # the config's keys and their current values
    aiqc demo | list [--tag T] | show queue ID | show job ID | best QUEUE [--metric M]
    aiqc tag queue|splitset ID TAG ... [--remove TAG] | alias NAME [JOB] [--remove]
    aiqc compare QUEUE QUEUE ... [--metric M] [--split S] | report QUEUE [QUEUE ...] PATH
    aiqc worker --queue ID | db path | db upgrade | db vacuum
    aiqc ui [--db URL] [--port 8050] [--host 127.0.0.1]   # a live, read-only dashboard in the browser
    aiqc export JOB PATH                 # JOB: an id or an alias; prints the file written
    aiqc predict PATH INPUT > out.csv    # an exported predictor; needs no database. INPUT: a CSV of rows
                                         # (- reads stdin); images: a file or a folder; sequences: a long CSV/parquet
    aiqc rm queue|splitset|dataset ID [--yes] [--force]   # shows what goes, then asks: Delete? [y/N]

Exit status 0 on success; on bad input a one-line error and status 2 (``--debug`` shows
the traceback).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from pathlib import Path
from typing import Any

from aiqc.exceptions import AIQCError

logger = logging.getLogger("aiqc")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aiqc", description="Run and inspect aiqc experiments.")
    parser.add_argument("--db", help="SQLite file or postgresql://user:password@host:port/dbname (default: the "
                        "config's db, AIQC_DB, or the user data directory; prefer AIQC_DB for a password)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="build and run the experiment of a YAML spec", add_help=False)
    run.add_argument("config", help="YAML spec")
    run.add_argument("overrides", nargs="*", help="key=value, +key=value (add), ~key (remove)")
    run.add_argument("-m", "--multirun", action="store_true",
                     help="sweep: experiment.hyperparameters.NAME=a,b becomes one queue over those values")
    run.add_argument("--output-dir", help="where to write the resolved config, log, metrics and report")
    run.add_argument("--allow-module", action="append", default=[], metavar="MODULE",
                     help="let the spec name classes/functions of MODULE (beyond sklearn.* and the spec's folder)")
    run.add_argument("-h", "--help", action="store_true", help="show the config's keys and values")

    commands.add_parser("demo", help="a small experiment on the bundled iris data")
    listing = commands.add_parser("list", help="every queue, with its name, tags and jobs per state")
    listing.add_argument("--tag", action="append", default=[], metavar="TAG",
                         help="only queues with this tag (repeat, or a,b: with every one)")
    tag = commands.add_parser("tag", help="add (or --remove) tags of a queue or a splitset")
    tag.add_argument("kind", choices=["queue", "splitset"])
    tag.add_argument("id", type=int)
    tag.add_argument("tags", nargs="*", metavar="TAG")
    tag.add_argument("--remove", action="append", default=[], metavar="TAG", help="remove this tag")
    alias = commands.add_parser("alias", help="point an alias (e.g. churn-prod) at a job, show or --remove it")
    alias.add_argument("alias")
    alias.add_argument("job", nargs="?", type=int, help="the job to point it at (moved from another job)")
    alias.add_argument("--remove", action="store_true", help="remove the alias")
    show = commands.add_parser("show", help="a queue's or a job's details")
    show.add_argument("kind", choices=["queue", "job"])
    show.add_argument("id", type=int)
    best = commands.add_parser("best", help="the best job of a queue")
    best.add_argument("queue", type=int)
    best.add_argument("--metric", help="default: the queue's objective metric")
    best.add_argument("--split", help="default: the queue's objective split")
    compare = commands.add_parser("compare", help="several queues' best and mean scores side by side")
    compare.add_argument("queues", type=int, nargs="+", metavar="QUEUE")
    compare.add_argument("--metric", help="default: the first queue's objective metric")
    compare.add_argument("--split", help="default: the first queue's objective split")
    report = commands.add_parser("report", help="write a queue's HTML report (several: with a comparison first)")
    report.add_argument("queues", type=int, nargs="+", metavar="QUEUE")
    report.add_argument("path")
    export = commands.add_parser("export", help="write a COMPLETE job as one file that predicts without the database")
    export.add_argument("job", metavar="JOB", help="a job id, or an alias pointing at a job")
    export.add_argument("path", metavar="PATH", help="the file to write, e.g. churn.aiqc")
    predict = commands.add_parser("predict", help="predict the rows of a CSV (or images, or sequences) with an "
                                  "exported job; CSV to stdout")
    predict.add_argument("path", metavar="PATH", help="a file written by `aiqc export` (or its unzipped folder)")
    predict.add_argument("input", metavar="INPUT", help="a table's predictor: a CSV of raw rows with the feature "
                         "columns (- reads stdin); an image predictor: an image file or a folder of them; a "
                         "sequence predictor: a long .csv/.tsv/.parquet (- reads a CSV from stdin)")
    worker = commands.add_parser("worker", help="join a queue as a worker")
    worker.add_argument("--queue", type=int, required=True)
    worker.add_argument("--threads", type=int)
    rm = commands.add_parser("rm", help="delete a queue, a splitset or a dataset (shows what goes, then asks)")
    rm.add_argument("kind", choices=["queue", "splitset", "dataset"])
    rm.add_argument("id", type=int)
    rm.add_argument("--yes", action="store_true", help="delete without asking")
    rm.add_argument("--force", action="store_true", help="delete a queue even while jobs of it run")
    db = commands.add_parser("db", help="the database: its path, upgrade its schema, or vacuum it")
    db.add_argument("action", choices=["path", "upgrade", "vacuum"])
    ui = commands.add_parser("ui", help="a live, read-only dashboard of the database in the browser "
                             "(pip install 'aiqc[ui]')")
    ui.add_argument("--db", default=argparse.SUPPRESS, help="the database to show (as aiqc --db)")
    ui.add_argument("--port", type=int, default=8050, help="default: 8050")
    ui.add_argument("--host", default="127.0.0.1",
                    help="default: 127.0.0.1 (this machine only); the app has no authentication")
    return parser


def _options_first(argv: list[str]) -> list[str]:
    """Let `aiqc run` take its options anywhere (Hydra style: `run CONFIG a=1 -m b=2,3`)."""
    if "run" not in argv:
        return argv
    at = argv.index("run") + 1
    head, rest, options = argv[:at], argv[at:], []
    positionals = []
    index = 0
    while index < len(rest):
        token = rest[index]
        if token in ("-m", "--multirun", "-h", "--help"):
            options.append(token)
        elif token in ("--output-dir", "--allow-module") and index + 1 < len(rest):
            options += [token, rest[index + 1]]
            index += 1
        elif token.startswith(("--output-dir=", "--allow-module=")):
            options.append(token)
        else:
            positionals.append(token)
        index += 1
    return head + options + positionals


def main(argv: list[str] | None = None) -> int:
    """Run the ``aiqc`` command of ``argv`` (default: ``sys.argv``); the exit status (2 on bad input)."""
    args = _parser().parse_args(_options_first(list(sys.argv[1:] if argv is None else argv)))
    logging.basicConfig(format="%(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)  # the terminal shows warnings; run.log gets everything
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:  # e.g. `aiqc show queue 1 | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as caught:  # noqa: BLE001 - re-raised below unless bad input or a database fault
        from aiqc.database import translate

        error = translate(caught) or caught  # a raw peewee/sqlite3 fault as its DatabaseError
        if args.debug or not isinstance(error, (AIQCError, ValueError, LookupError)):
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        sys.stderr.write(f"aiqc: error: {message}\n")
        return 2


def _setup(args: argparse.Namespace, default: str | None = None) -> Path:
    import aiqc

    return aiqc.setup(args.db or default)


def _out(text: str) -> None:
    sys.stdout.write(text.rstrip("\n") + "\n")


def cmd_run(args: argparse.Namespace) -> int:
    """``aiqc run``: build the queue of a YAML spec, run it, and write its config, log, metrics and
    report to the output directory; 1 when a job failed."""
    from omegaconf import OmegaConf

    from aiqc import spec as specs

    config = specs.load(args.config, args.overrides, multirun=args.multirun)
    if args.help:
        _out(f"usage: aiqc run {args.config} [key=value ...] [-m] [--output-dir DIR] [--allow-module MODULE ...]\n\n"
             f"keys of {args.config}:")
        for key, value in specs.flatten(config):
            _out(f"  {key} = {value!r}")
        if "allow_modules" not in config:
            _out("  (+allow_modules=[MODULE, ...] lets it name code beyond sklearn.* and its own folder)")
        return 0
    resolved = specs.to_dict(config)
    specs.check_structure(resolved)
    prepared = specs.prepare(resolved, Path(args.config).resolve().parent,
                             specs.allow_list(args.allow_module, "--allow-module"))
    path = _setup(args, resolved.get("db"))
    queue = _noting_reuse(specs.store, prepared)

    now = dt.datetime.now()
    output = Path(args.output_dir or resolved.get("output_dir") or Path("outputs") / now.strftime("%Y-%m-%d") /
                  now.strftime("%H-%M-%S")).resolve()
    output.mkdir(parents=True, exist_ok=True)
    (output / "config.yaml").write_text(OmegaConf.to_yaml(config))
    handler = logging.FileHandler(output / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    queue.output_dir = str(output)
    queue.save(only=["output_dir"])
    logger.info("queue %s from %s %s, database %s", queue.id, args.config, " ".join(args.overrides), path)
    try:
        run = resolved.get("run") or {}
        summary = queue.run_jobs(workers=int(run.get("workers") or 1), threads=run.get("threads"))
        logger.info("%s", summary)
        queue.metrics_to_pandas().to_csv(output / "metrics.csv", index=False)
        if summary.complete:
            queue.report(output / "report.html")
    finally:
        logger.removeHandler(handler)
        handler.close()
    _out(f"queue {queue.id}: {summary.complete} complete, {summary.pruned} pruned, {summary.failed} failed")
    _out(f"output {output}")
    if summary.complete:
        best = queue.best_job()
        metric, split = queue.objective
        _out(f"best job {best.id} {best.hyperparameters} (by {split} {metric})")
    return 0 if summary.failed == 0 else 1


def _noting_reuse(store: Any, *args: Any) -> Any:
    """``store(*args)``, with a :class:`~aiqc.exceptions.DataReusedNotice` printed as a ``note:``
    line (any other warning is shown as usual)."""
    import warnings

    from aiqc.exceptions import DataReusedNotice

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataReusedNotice)
        result = store(*args)
    for warning in caught:
        if issubclass(warning.category, DataReusedNotice):
            _out(f"note: {warning.message}")
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return result


def cmd_demo(args: argparse.Namespace) -> int:
    """``aiqc demo``: a small experiment on the bundled iris data."""
    from aiqc.demo import main as demo

    return demo(["--db", args.db] if args.db else [])


def cmd_list(args: argparse.Namespace) -> int:
    """``aiqc list``: print every queue, with its jobs per state."""
    import aiqc

    _setup(args)
    wanted = [t for given in args.tag for t in given.split(",")]
    frame = aiqc.list_queues(tag=wanted or None)
    if frame.empty:
        _out(f"no queues tagged {', '.join(wanted)}" if wanted else "no queues yet")
        return 0
    frame = frame.drop(columns=["created_at"]).assign(name=frame["name"].fillna(""),
                                                      tags=frame["tags"].map(",".join))
    _out(frame.to_string(index=False))
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    """``aiqc tag queue|splitset ID TAG ... [--remove TAG]``: add and remove tags; prints the tags."""
    import aiqc

    _setup(args)
    record = (aiqc.Queue if args.kind == "queue" else aiqc.Splitset).get_by_id(args.id)
    tags = record.add_tags(*args.tags)
    if args.remove:
        tags = record.remove_tags(*args.remove)
    _out(f"{args.kind} {args.id} tags: {', '.join(tags) or '(none)'}")
    return 0


def cmd_alias(args: argparse.Namespace) -> int:
    """``aiqc alias NAME [JOB] [--remove]``: point an alias at a job (moving it), show it, or remove it."""
    import aiqc

    _setup(args)
    if args.remove:
        job = aiqc.Job.get_by_alias(args.alias)
        job.remove_alias(args.alias)
        _out(f"alias {args.alias!r} removed from job {job.id}")
    elif args.job is None:
        job = aiqc.Job.get_by_alias(args.alias)
        _out(f"alias {args.alias!r} -> job {job.id} (queue {job.queue_id}) {job.hyperparameters}")
    else:
        previous = aiqc.Job.get_by_id(args.job).set_alias(args.alias)
        moved = f" (moved from job {previous.id})" if previous is not None else ""
        _out(f"alias {args.alias!r} -> job {args.job}{moved}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """``aiqc show queue|job ID``: print a queue's or a job's details and metrics."""
    import aiqc

    _setup(args)
    if args.kind == "queue":
        queue = aiqc.Queue.get_by_id(args.id)
        experiment = queue.experiment
        counts = {state.value: n for state, n in queue.state_counts().items()}
        _out(f"queue {queue.id}: {experiment.library} {experiment.analysis_type}, splitset {experiment.splitset_id}, "
             f"{counts}")
        if experiment.name or experiment.tags:
            _out(f"name {experiment.name or ''}" + (f"  tags {', '.join(experiment.tags)}" if experiment.tags else ""))
        if experiment.description:
            _out(f"description {experiment.description}")
        if queue.output_dir:
            _out(f"output {queue.output_dir}")
        _out(f"hyperparameters {experiment.hyperparameters}")
        frame = queue.metrics_to_pandas()
        if not frame.empty:
            _out(frame.to_string(index=False))
        return 0
    job = aiqc.Job.get_by_id(args.id)
    _out(f"job {job.id}: {job.state}, queue {job.queue_id}, repeat {job.repeat_index}, fold {job.fold_index}, "
         f"seed {job.seed}, {job.seconds or 0:.2f} s")
    _out(f"hyperparameters {job.hyperparameters}")
    if job.aliases:
        _out(f"aliases {', '.join(job.aliases)}")
    if job.versions:
        _out("versions " + "  ".join(f"{name} {version}" for name, version in job.versions.items()))
    for split, values in job.metrics().items():
        _out(f"{split:>11} " + "  ".join(f"{k}={v:.4f}" for k, v in values.items()))
    if job.error:
        _out(job.error)
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    """``aiqc best QUEUE``: print the best job of a queue, its hyperparameters and metrics."""
    import aiqc

    _setup(args)
    queue = aiqc.Queue.get_by_id(args.queue)
    metric, split = args.metric or queue.objective[0], args.split or queue.objective[1]
    job = queue.best_job(metric=metric, split=split)
    _out(f"job {job.id} {job.hyperparameters}")
    _out(f"best by {split} {metric} = {job.metrics().get(split, {}).get(metric, float('nan')):.4f}")
    for split, values in job.metrics().items():
        _out(f"{split:>11} " + "  ".join(f"{k}={v:.4f}" for k, v in values.items()))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """``aiqc compare QUEUE QUEUE ...``: print each queue's best and mean score and their spread."""
    import aiqc

    _setup(args)
    frame = aiqc.compare_queues(args.queues, metric=args.metric, split=args.split)
    frame["tags"] = [",".join(tags) for tags in frame["tags"]]
    frame["name"] = frame["name"].fillna("")
    _out(frame.to_string(index=False))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``aiqc report QUEUE [QUEUE ...] PATH``: write the HTML report of a queue (of several,
    after a comparison of them) and print its path."""
    import aiqc

    _setup(args)
    queues = args.queues[0] if len(args.queues) == 1 else args.queues
    _out(str(aiqc.write_report(queues, args.path)))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``aiqc export JOB PATH``: write a COMPLETE job (an id, or an alias) as one self-contained
    file and print its path."""
    import aiqc

    _setup(args)
    job = aiqc.Job.get_by_id(int(args.job)) if args.job.isdigit() else aiqc.Job.get_by_alias(args.job)
    _out(str(job.export(args.path)))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """``aiqc predict PATH INPUT``: predict with an exported job and write the predictions as CSV
    to stdout (no database is opened). What INPUT is depends on the predictor (see
    :data:`PREDICT_INPUTS`); image predictions start with a ``file`` column (the file given,
    or each file's name within the folder), sequence predictions with the sequence ids."""
    from aiqc.export import load_predictor

    predictor = load_predictor(args.path)
    samples, leading = PREDICT_INPUTS[predictor.modality](args.input, predictor)
    predictions = predictor.predict(samples)
    if leading is not None:
        predictions.insert(0, leading.name, leading.to_numpy())
    _out(predictions.to_csv(index=False))
    return 0


def _rows_to_predict(source: str, predictor: Any) -> tuple[Any, None]:
    """A table's INPUT: the raw rows of a CSV file (``-``: stdin)."""
    import pandas as pd

    from aiqc.exceptions import ValidationError

    try:
        return pd.read_csv(sys.stdin if source == "-" else source), None
    except (OSError, ValueError) as error:  # missing file, empty or malformed CSV
        raise ValidationError(f"INPUT.csv: expected a readable CSV file with a header row; received {source!r}: "
                              f"{error}") from error


def _images_to_predict(source: str, predictor: Any) -> tuple[Any, Any]:
    """An image predictor's INPUT: one image file, or a folder of them (every PNG/JPEG under it,
    by sorted name); with the ``file`` column that names each."""
    import pandas as pd

    from aiqc.data.images import list_image_files
    from aiqc.exceptions import ValidationError

    path = Path(source).expanduser()
    if path.is_dir():
        names = list_image_files(path, "INPUT")
        return [str(path / name) for name in names], pd.Series(names, name="file")
    if not path.is_file():
        raise ValidationError(f"INPUT: expected an image file or a folder of images; received {source!r}, which does "
                              "not exist.")
    return [str(path)], pd.Series([source], name="file")


def _sequences_to_predict(source: str, predictor: Any) -> tuple[Any, Any]:
    """A sequence predictor's INPUT: a long .csv/.tsv/.parquet file (``-``: a CSV on stdin) with the
    columns the sequences were made from; with the sequence ids, in the order they first appear
    (the order the sequences are read in)."""
    import pandas as pd

    from aiqc.data.frames import read_path
    from aiqc.exceptions import ValidationError

    if source == "-":
        try:
            frame = pd.read_csv(sys.stdin)
        except (OSError, ValueError) as error:
            raise ValidationError(f"INPUT: expected a readable CSV on stdin with a header row: {error}") from error
    else:
        frame = read_path(source, parameter="INPUT")
    column = predictor.input.settings.get("sequence_column")
    leading = pd.Series(pd.unique(frame[column]), name=column) if column in frame.columns else None
    return frame, leading


#: an exported predictor's modality -> how ``aiqc predict`` reads INPUT: (what the predictor takes,
#: a column to put first in the output, or None)
PREDICT_INPUTS = {"tabular": _rows_to_predict, "image": _images_to_predict, "sequence": _sequences_to_predict}


def cmd_worker(args: argparse.Namespace) -> int:
    """``aiqc worker --queue ID``: join a queue as a worker and run its jobs."""
    from aiqc.worker import main as worker

    return worker(["--queue", str(args.queue)] + (["--db", args.db] if args.db else [])
                  + (["--threads", str(args.threads)] if args.threads else []))


def cmd_rm(args: argparse.Namespace) -> int:
    """``aiqc rm queue|splitset|dataset ID``: print what would be deleted, ask ``Delete? [y/N]``
    (``--yes``: don't), then delete; 1 when the answer is not y (nothing deleted); a refusal
    (still used by queues; jobs running without ``--force``) is an error before the question."""
    from aiqc import deletion

    _setup(args)
    plan = deletion.plan(args.kind, args.id)
    plan.check(args.force)
    _out(str(plan))
    if not args.yes and not _confirm("Delete? [y/N] "):
        _out("nothing was deleted")
        return 1
    _out(f"deleted {deletion.delete(args.kind, args.id, force=args.force)}")
    return 0


def _confirm(prompt: str) -> bool:
    """Whether the answer read from stdin, a terminal or a pipe (``echo y | aiqc rm ...``), is
    y or yes; the end of input is no."""
    sys.stdout.write(prompt)
    sys.stdout.flush()
    answer = sys.stdin.readline() if sys.stdin is not None else ""
    if sys.stdin is None or not sys.stdin.isatty():
        sys.stdout.write(answer.strip() + "\n")  # a piped answer is shown, as a typed one would be
    return answer.strip().lower() in ("y", "yes")


def cmd_db(args: argparse.Namespace) -> int:
    """``aiqc db path|upgrade|vacuum``: print the database's path, bring its schema up to date,
    or give back the room of deleted rows (printing the bytes reclaimed)."""
    from aiqc.database import schema_version, vacuum

    path = _setup(args)
    if args.action == "path":
        _out(str(path))
    elif args.action == "vacuum":
        reclaimed = vacuum()
        _out(f"{path}: vacuumed" + ("" if reclaimed is None else f", {reclaimed:,} bytes reclaimed"))
    else:
        _out(f"{path}: schema version {schema_version()} (up to date)")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """``aiqc ui``: serve the read-only dashboard until Ctrl-C; prints its URL (a host other than
    127.0.0.1, localhost or ::1 is served with a warning that the app has no authentication)."""
    from aiqc import ui

    ui.serve(args.db, host=args.host, port=args.port, read_only=True, announce=_out)
    return 0


COMMANDS = {"run": cmd_run, "demo": cmd_demo, "list": cmd_list, "tag": cmd_tag, "alias": cmd_alias,
            "show": cmd_show, "best": cmd_best,
            "report": cmd_report, "compare": cmd_compare, "export": cmd_export, "predict": cmd_predict,
            "worker": cmd_worker, "rm": cmd_rm, "db": cmd_db, "ui": cmd_ui}


if __name__ == "__main__":
    raise SystemExit(main())
