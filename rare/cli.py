"""The ``rare`` command: run pipelines, list plugins, run the demo."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click
import tomllib

from rare import plugins
from rare.errors import RareError
from rare.pipeline import Pipeline, check_config, rare_steps, steps_from_config
from rare.report import RunReport, StageReport
from rare.runinfo import write_run_info


def _parse_options(pairs: tuple[str, ...], flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=flag)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


#: BM25HardNeg's mining settings that `rare run` takes as flags: (setting, flag)
MINING_FLAGS = (("start_rank", "--start-rank"), ("end_rank", "--end-rank"),
                ("sampling", "--sampling"), ("seed", "--seed"),
                ("max_score_ratio", "--max-score-ratio"), ("min_score_gap", "--min-score-gap"))
HARDNEG_OPERATORS = ("BM25HardNeg", "RAREBM25HardNegGenerator")


def _apply_mining_flags(steps: list[Any], given: dict[str, Any], judge: bool) -> None:
    """Put the mining flags given into every BM25HardNeg step (as run settings, which win
    over the step's own init and run settings from a config), then check each such step's
    resulting settings, so that a bad value stops the run before any work, naming the
    setting and the flag."""
    from rare.errors import SettingsError
    from rare.retriever import check_mining_settings

    flags = dict(MINING_FLAGS)
    mining = [s for s in steps if s.operator in HARDNEG_OPERATORS]
    if (given or judge) and not mining:
        names = ", ".join(flags[k] for k in given) + (", --judge" if judge else "")
        raise click.UsageError(f"{names.lstrip(', ')}: the pipeline has no BM25HardNeg step")
    for step in mining:
        step.run.update(given)
        if judge:
            step.init["judge"] = True

        def setting(key: str, default: Any, step: Any = step) -> Any:
            value = step.run.get(key)
            return step.init.get(key, default) if value is None else value

        try:
            check_mining_settings(setting("num_neg", 3), setting("start_rank", 0),
                                  setting("end_rank", None), setting("sampling", "top"),
                                  setting("max_score_ratio", None),
                                  setting("min_score_gap", None), error=SettingsError)
        except SettingsError as exc:
            named = [flags[k] for k in flags if k in given and k in str(exc)]
            hint = f" ({', '.join(named)})" if named else ""
            raise click.UsageError(f"BM25HardNeg: {exc}{hint}") from None


def _print_stage(report: StageReport) -> None:
    s = report.stats
    click.echo(f"  {report.name}: {s.get('rows_out', '?')} rows, {s.get('failed', 0)} failed, "
               f"{s.get('seconds', 0):.1f} s -> {report.output}", err=True)


def _negative_lines(stage: StageReport) -> list[str]:
    """A mining stage's skipped candidates and its judge's work, when it reports them."""
    s, lines = stage.stats, []
    reasons = [("same_id", "same id"), ("near_duplicate", "near-duplicate"),
               ("above_margin", "above the margin"), ("outside_window", "outside the window")]
    if any(f"skipped_{key}" in s for key, _ in reasons):
        counts = ", ".join(f"{label} {s.get(f'skipped_{key}', 0)}" for key, label in reasons)
        lines.append(f"  {stage.name} skipped candidates: {counts}")
    if "judge_calls" in s:
        control = s.get("judge_control", 0)
        lines.append(f"  {stage.name} judge: {s['judge_calls']} questions, "
                     f"{s.get('judge_dropped', 0)} negatives dropped as answering, "
                     f"{s.get('judge_failed', 0)} unanswered; control: "
                     f"{s.get('judge_control_no', 0)} of {control} positives judged "
                     "not to answer")
    return lines


def print_summary(report: RunReport) -> None:
    click.echo("")
    click.echo(f"rare run: {report.input} -> {report.output}")
    click.echo(f"  rows in {report.rows_in}, rows out {report.rows_out}, "
               f"failed rows {report.failed_rows}")
    click.echo(f"  {'stage':<16}{'rows':>6}{'failed':>8}{'tokens':>10}{'seconds':>10}")
    for stage in report.stages:
        s = stage.stats
        click.echo(f"  {stage.name:<16}{s.get('rows_out', 0):>6}{s.get('failed', 0):>8}"
                   f"{s.get('tokens', 0):>10}{s.get('seconds', 0.0):>10.1f}")
    for stage in report.stages:
        for line in _negative_lines(stage):
            click.echo(line)
    usage = report.usage
    if usage:
        click.echo(f"  LLM calls {usage.get('calls', 0)}, prompt tokens "
                   f"{usage.get('prompt_tokens', 0)}, completion tokens "
                   f"{usage.get('completion_tokens', 0)}")
    if report.failures:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(report.failures.items()))
        click.echo(f"  failed calls by reason: {reasons}")
    if report.row_failures:
        reasons = ", ".join(f"{k}: {v}" for k, v in report.row_failures.most_common())
        click.echo(f"  failed rows by reason: {reasons}")
    if report.row_warnings:
        reasons = ", ".join(f"{k}: {v}" for k, v in report.row_warnings.most_common())
        click.echo(f"  rows kept with a warning: {reasons}")
    for stage in report.stages:
        s = stage.stats
        judged, grounded, samples = s.get("judged", 0), s.get("grounded", 0), \
            s.get("samples", 0)
        if judged:
            click.echo(f"  {stage.name}: grounded {grounded} of {judged} "
                       f"({100 * grounded / judged:.0f}%), samples {samples}, "
                       f"{samples / judged:.1f} per reply kept")
    click.echo(f"  total {report.seconds:.1f} s")


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log what the stages do.")
def cli(verbose: bool) -> None:
    """rare-synth: turn documents into RARE training data."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="TOML file with [pipeline], [serving], [retriever], [runner] and "
                   "[[steps]].")
@click.option("--input", "input_path", help="Input rows (.json, .jsonl, .csv, .parquet).")
@click.option("--output", "output_path", help="Where the final rows go (format by extension).")
@click.option("--serving", help="Registered serving name (default: embedded).")
@click.option("--api-url", multiple=True,
              help="OpenAI-compatible chat-completions URL (implies --serving openai). Give "
                   "it again for more endpoints: a runner that spreads work (ray) spreads "
                   "its workers over them.")
@click.option("--model", help="Model name for the serving.")
@click.option("-S", "--serving-option", multiple=True, help="Serving option KEY=VALUE.")
@click.option("--retriever", help="Registered retriever name (default: tantivy, else gensim).")
@click.option("-R", "--retriever-option", multiple=True, help="Retriever option KEY=VALUE.")
@click.option("--text-key", help="Field holding the document text (default: text).")
@click.option("--language",
              help="Language of the documents: en (default for retrieval), zh, or auto "
                   "(picked from the texts' scripts). Sets the retriever's analyzer and the "
                   "prompts' language (by default each document's own).")
@click.option("--num-neg", type=int, help="Hard negatives per question (default: 3).")
@click.option("--start-rank", type=int,
              help="BM25HardNeg: first candidate rank to take negatives from (default: 0; "
                   "10 skips the ten closest candidates).")
@click.option("--end-rank", type=int,
              help="BM25HardNeg: the window ends before this candidate rank (default: no "
                   "end); must be > --start-rank.")
@click.option("--sampling", type=click.Choice(["top", "random"]),
              help="BM25HardNeg: keep the best candidates of the window (top, default) or a "
                   "seeded random draw from it (random; give --end-rank too).")
@click.option("--seed", type=int,
              help="BM25HardNeg: seed of --sampling random (default: 0).")
@click.option("--max-score-ratio", type=float,
              help="BM25HardNeg: skip a candidate scoring above this fraction of the "
                   "positive's own score, in (0, 1]; 0.95 is the value for a real corpus "
                   "(default: off).")
@click.option("--min-score-gap", type=float,
              help="BM25HardNeg: skip a candidate scoring less than this far below the "
                   "positive's score, >= 0 (default: off).")
@click.option("--judge", is_flag=True,
              help="BM25HardNeg: ask the run's LLM serving whether each negative in fact "
                   "answers the question, and replace those that do from deeper "
                   "candidates.")
@click.option("--cache-dir", help="Directory of the per-step files (default: ./cache).")
@click.option("--cache-type", type=click.Choice(["json", "jsonl", "csv", "parquet"]))
@click.option("--batch-size", type=int,
              help="Rows read, transformed and written at a time (default: 1024, or "
                   "$RARE_BATCH_SIZE).")
@click.option("--max-samples", type=int,
              help="ReasonDistill: replies asked for per row until one is grounded "
                   "(default: 4).")
@click.option("--no-grounding", is_flag=True,
              help="ReasonDistill: keep the first reply, grounded or not (no rejection "
                   "sampling).")
@click.option("--no-cache", is_flag=True, help="Do not read or write the LLM response cache.")
@click.option("--response-cache", "response_cache",
              help="Directory of the LLM response cache (default: $RARE_CACHE_DIR/responses, "
                   "else ~/.cache/rare-synth/responses).")
@click.option("--runner", help="Registered runner name: local (default) or ray.")
@click.option("--ray-address",
              help="Address of a running Ray cluster, e.g. 10.0.0.1:6379 (implies --runner "
                   "ray; default: $RAY_ADDRESS, else a Ray instance on this machine).")
@click.option("-X", "--runner-option", multiple=True,
              help="Runner option KEY=VALUE (ray: pool_size, num_cpus, num_gpus, ...).")
def run(config_path: str | None, input_path: str | None, output_path: str | None,
        serving: str | None, api_url: tuple[str, ...], model: str | None,
        serving_option: tuple[str, ...], retriever: str | None,
        retriever_option: tuple[str, ...], text_key: str | None, language: str | None,
        num_neg: int | None, start_rank: int | None, end_rank: int | None,
        sampling: str | None, seed: int | None, max_score_ratio: float | None,
        min_score_gap: float | None, judge: bool,
        cache_dir: str | None, cache_type: str | None, batch_size: int | None,
        max_samples: int | None, no_grounding: bool, no_cache: bool,
        response_cache: str | None, runner: str | None, ray_address: str | None,
        runner_option: tuple[str, ...]) -> None:
    """Run Doc2Query, BM25HardNeg and ReasonDistill (or the config's steps) on a file."""
    config: dict[str, Any] = {}
    if config_path:
        try:
            config = tomllib.loads(Path(config_path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise click.ClickException(f"{config_path}: {exc}") from None
    try:
        check_config(config, config_path or "config")
    except RareError as exc:
        raise click.ClickException(str(exc)) from None
    pipe = config.get("pipeline", {})
    serving_cfg = dict(config.get("serving", {}))
    retriever_cfg = dict(config.get("retriever", {}))
    runner_cfg = dict(config.get("runner", {}))
    input_path = input_path or pipe.get("input")
    output_path = output_path or pipe.get("output")
    if not input_path or not output_path:
        raise click.UsageError("--input and --output are required (or set them in --config)")
    serving_name = serving or serving_cfg.pop("name", None)
    serving_opts = {k: v for k, v in serving_cfg.items() if k != "name"}
    serving_opts.update(_parse_options(serving_option, "--serving-option"))
    runner_name = runner or runner_cfg.pop("name", None)
    runner_opts = {k: v for k, v in runner_cfg.items() if k != "name"}
    runner_opts.update(_parse_options(runner_option, "--runner-option"))
    if ray_address:
        runner_opts["address"] = ray_address
        runner_name = runner_name or "ray"
    if api_url:
        serving_opts["api_url"] = api_url[0]
        serving_name = serving_name or "openai"
        if len(api_url) > 1:
            if (runner_name or "local") == "local":
                raise click.UsageError("several --api-url need a runner that spreads its "
                                       "workers over them: add --runner ray")
            runner_opts["api_urls"] = list(api_url)
    if model:
        serving_opts["model_name"] = model
    retriever_name = retriever or retriever_cfg.pop("name", None)
    retriever_opts = {k: v for k, v in retriever_cfg.items() if k != "name"}
    retriever_opts.update(_parse_options(retriever_option, "--retriever-option"))
    try:
        if "steps" in config:
            steps = steps_from_config(config)
        else:
            steps = rare_steps(text_key or pipe.get("text_key", "text"),
                               num_neg or pipe.get("num_neg", 3))
        for step in steps:
            if step.operator in ("ReasonDistill", "RAREReasonDistillGenerator"):
                if max_samples is not None:
                    step.init["max_samples"] = max_samples
                if no_grounding:
                    step.init["grounding"] = False
            if (step.operator in HARDNEG_OPERATORS and num_neg is not None
                    and "steps" in config):
                step.run["num_neg"] = num_neg
        flag_values = {"start_rank": start_rank, "end_rank": end_rank, "sampling": sampling,
                       "seed": seed, "max_score_ratio": max_score_ratio,
                       "min_score_gap": min_score_gap}
        _apply_mining_flags(steps, {k: v for k, v in flag_values.items() if v is not None},
                            judge)
        pipeline = Pipeline(steps, serving=serving_name, serving_options=serving_opts,
                            retriever=retriever_name, retriever_options=retriever_opts,
                            batch_size=batch_size or pipe.get("batch_size"),
                            language=language or pipe.get("language"),
                            runner=runner_name, runner_options=runner_opts)
        if pipeline.serving is not None:
            if no_cache or pipe.get("no_cache"):
                pipeline.serving.use_cache(False)
            elif response_cache or pipe.get("response_cache"):
                pipeline.serving.use_cache(response_cache or pipe["response_cache"])
        try:
            report = pipeline.run(input_path, output_path,
                                  cache_path=cache_dir or pipe.get("cache_path", "./cache"),
                                  cache_type=cache_type or pipe.get("cache_type", "jsonl"),
                                  on_stage=_print_stage)
            write_run_info(pipeline, report)
        except KeyboardInterrupt:
            if pipeline.serving is not None:
                usage = pipeline.serving.usage
                click.echo(f"\nstopped after {usage['calls']} LLM calls in this run "
                           f"({usage['reused']} replies reused from earlier ones)", err=True)
            raise
        finally:
            if pipeline.serving is not None:
                pipeline.serving.close()
    except RareError as exc:
        raise click.ClickException(str(exc)) from None
    print_summary(report)


@cli.group("cache")
def cache_group() -> None:
    """Inspect or clear the LLM response cache."""


@cache_group.command("info")
@click.option("--dir", "directory", help="Cache directory (default: the shared one).")
def cache_info(directory: str | None) -> None:
    """Where the response cache lives and how many replies it holds."""
    from rare.llm import ResponseCache

    cache = ResponseCache(directory)
    click.echo(f"{cache.directory}: {len(cache)} cached replies")
    cache.close()


@cache_group.command("clear")
@click.option("--dir", "directory", help="Cache directory (default: the shared one).")
def cache_clear(directory: str | None) -> None:
    """Delete every cached reply."""
    from rare.llm import ResponseCache

    cache = ResponseCache(directory)
    removed = cache.clear()
    click.echo(f"removed {removed} cached replies from {cache.directory}")
    cache.close()


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def plugins_cmd(as_json: bool) -> None:
    """List every loaded plugin, its version and what it registered."""
    try:
        info = plugins.plugin_info()
    except RareError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for item in info:
        version = item["version"] or "-"
        click.echo(f"{item['name']} {version}" + (f" ({item['distribution']})"
                                                  if item["distribution"] else ""))
        for kind, names in item["registered"].items():
            if names:
                click.echo(f"    {kind}: {', '.join(names)}")


@cli.command("retrievers")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def retrievers_cmd(as_json: bool) -> None:
    """List every registered retriever, the plugin that registered it and whether it is a
    reference (benchmarked by `rare bench` only when named)."""
    try:
        registry = plugins.get_registry("retrievers")
    except RareError as exc:
        raise click.ClickException(str(exc)) from None
    info: list[dict[str, Any]] = [
        {"name": e.name, "plugin": e.plugin, "aliases": list(e.aliases),
         "class": f"{e.obj.__module__}.{e.obj.__qualname__}",
         "reference": bool(getattr(e.obj, "reference", False))}
        for e in sorted(registry.entries.values(), key=lambda e: e.name)]
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    width = max((len(item["name"]) for item in info), default=0) + 2
    for item in info:
        aliases = f" (also {', '.join(item['aliases'])})" if item["aliases"] else ""
        kind = "  reference" if item["reference"] else ""
        click.echo(f"{item['name']:<{width}}{item['plugin']}{kind}{aliases}")


@cli.command()
@click.option("--dir", "out_dir", default="rare-demo", show_default=True,
              help="Where the demo's input, cache and output go.")
@click.option("--limit", type=int, default=12, show_default=True,
              help="How many documents of the Python reference to use (0 = all).")
@click.option("--doc-tokens", type=int, default=384, show_default=True,
              help="Tokens of each document the LLM sees (keeps the demo to minutes).")
@click.option("--reply-tokens", type=int, default=768, show_default=True,
              help="Longest reasoning the LLM may write.")
@click.option("--max-samples", type=int, default=2, show_default=True,
              help="ReasonDistill: replies asked for per row until one is grounded.")
@click.option("--export-only", is_flag=True, help="Write the documents and stop.")
@click.option("--serving", help="Registered serving name (default: embedded).")
def demo(out_dir: str, limit: int, doc_tokens: int, reply_tokens: int, max_samples: int,
         export_only: bool, serving: str | None) -> None:
    """Export the Python language reference that ships with CPython, run RARE on it and
    write a page to look at the result (rare view)."""
    from rare.demo import export_python_docs

    base = Path(out_dir)
    docs = export_python_docs(base / "python_docs.jsonl", limit=limit or None)
    click.echo(f"wrote {docs.count} documents of the Python language reference to {docs.path}",
               err=True)
    if export_only:
        return
    import rare.serving

    steps = rare_steps("text")
    steps[0].init["max_doc_tokens"] = doc_tokens
    steps[2].init.update(max_doc_tokens=doc_tokens, max_tokens=reply_tokens,
                         max_samples=max_samples)
    from rare.view import build_page

    try:
        with rare.serving.create(serving) as llm:
            pipeline = Pipeline(steps, serving=llm)
            report = pipeline.run(docs.path, base / "rare_output.jsonl",
                                  cache_path=base / "cache", on_stage=_print_stage)
            write_run_info(pipeline, report)
        page = build_page(report.output, base / "rare_output.html")
    except RareError as exc:
        raise click.ClickException(str(exc)) from None
    print_summary(report)
    click.echo(f"\nrare view: {page.rows} rows -> {page.path}")
    click.echo(f"  open it in a browser to look at every row: {page.path.resolve().as_uri()}")
    click.echo(f"  export for training: rare export {report.output} --format chat "
               f"--out {base / 'export'}")


@cli.command("export")
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", required=True,
              help="An exporter: sharegpt, alpaca, chat, triplets, ntuple, beir, hf (see "
                   "`rare plugins`).")
@click.option("--out", "out", required=True, type=click.Path(),
              help="Directory to write (replaced only with --force).")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@click.option("--include-failed", is_flag=True,
              help="Keep failed, ungrounded and wrong-answer rows (left out by default).")
@click.option("--val-fraction", type=float, default=0.0, show_default=True,
              help="Share of the kept rows for a validation split (seeded shuffle).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split.")
@click.option("--name", default="rare", show_default=True,
              help="Dataset name (LLaMA-Factory's dataset_info.json entry, the card's title).")
@click.option("--text-key", help="Column of the documents' text (default: the run's).")
@click.option("--push-to-hub", "push_to_hub", metavar="REPO",
              help="With --format hf: push to this Hugging Face dataset repository; the "
                   "token comes from $HF_TOKEN and is never written.")
def export_cmd(source: str, fmt: str, out: str, force: bool, include_failed: bool,
               val_fraction: float, seed: int, name: str, text_key: str | None,
               push_to_hub: str | None) -> None:
    """Turn a run's output (SOURCE) into what a trainer reads."""
    import os

    from rare.export import export

    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    try:
        result = export(source, fmt, out, force=force, include_failed=include_failed,
                        val_fraction=val_fraction, seed=seed, name=name,
                        push_to_hub=push_to_hub, token=token if push_to_hub else None,
                        text_key=text_key)
    except RareError as exc:
        raise click.ClickException(str(exc)) from None
    counts = result.counts
    splits = ", ".join(f"{k} {v}" for k, v in counts["splits"].items()) or "no rows"
    click.echo(f"rare export: {source} -> {result.out} ({fmt})")
    click.echo(f"  rows {counts['rows']}, kept {counts['kept']} ({splits})")
    if counts["left_out"]:
        reasons = ", ".join(f"{k}: {v}" for k, v in counts["left_out"].items())
        hint = "" if include_failed else " (--include-failed keeps failed and ungrounded rows)"
        click.echo(f"  left out: {reasons}{hint}")
    for path in result.files:
        click.echo(f"  wrote {path}")
    if push_to_hub:
        click.echo(f"  pushed to https://huggingface.co/datasets/{push_to_hub}")


@cli.command("view")
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("--out", "out", type=click.Path(dir_okay=False),
              help="The HTML file to write (default: SOURCE with .html).")
@click.option("--max-rows", type=int, default=2000, show_default=True,
              help="Rows the page holds; a larger run is shown as a seeded sample (the "
                   "summary still counts every row).")
@click.option("--page-size", type=int, default=25, show_default=True,
              help="Rows rendered per page.")
def view_cmd(source: str, out: str | None, max_rows: int, page_size: int) -> None:
    """Write one self-contained HTML page for looking at a run's output (SOURCE)."""
    from rare.view import build_page

    if max_rows < 1 or page_size < 1:
        raise click.BadParameter("must be at least 1", param_hint="--max-rows/--page-size")
    try:
        result = build_page(source, out, max_rows=max_rows, page_size=page_size)
    except (RareError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    shown = "" if result.shown == result.rows else f" (a sample of {result.shown})"
    click.echo(f"rare view: {result.rows} rows{shown} -> {result.path}")
    click.echo(f"  open it in a browser: {result.path.resolve().as_uri()}")


@cli.command()
@click.option("--corpus", required=True,
              help="JSONL or JSONL.gz documents with an id (_id/id) and text (text/contents).")
@click.option("--queries", required=True,
              help="Queries: 'qid<TAB>query' lines (TSV), BEIR queries.jsonl, or a TREC "
                   "topics file.")
@click.option("--qrels", help="TREC or BEIR (qrels/test.tsv) qrels, for nDCG@10, recall@k "
                                "and the mining positives.")
@click.option("--backends", default=None,
              help="Comma-separated registered retrievers (default: every registered one "
                   "but the references).")
@click.option("--reference", "references", default="",
              help="Comma-separated reference rows: bm25s, tantivy-py.")
@click.option("--k", "k", type=int, default=100, show_default=True,
              help="Search and mining depth (top-k).")
@click.option("--threads", default="1,2", show_default=True,
              help="Comma-separated thread counts; each is a separate run.")
@click.option("--k1", type=float, default=1.2, show_default=True, help="BM25 k1.")
@click.option("--b", "b", type=float, default=0.75, show_default=True, help="BM25 b.")
@click.option("--num-neg", type=int, default=3, show_default=True,
              help="Hard negatives mined per query.")
@click.option("--max-docs", type=int, help="Use the corpus's first N documents.")
@click.option("--max-queries", type=int, help="Use the first N queries.")
@click.option("--id-field", help="Field of the document id (default: _id, else id).")
@click.option("--text-field", help="Field of the text (default: text, else contents).")
@click.option("--title-field", help="Field of a title to put before the text (default: none).")
@click.option("--repeat", type=int, default=3, show_default=True,
              help="Timed runs of search and of mining; the median is reported.")
@click.option("--language", default="en", show_default=True,
              help="Language of the corpus: en, zh (each backend's Chinese analyzer: CJK "
                   "bigrams; bm25s: jieba), or auto.")
@click.option("--min-overlap", type=float, default=0.9, show_default=True,
              help="Warn when two backends share less of their top-10 lists.")
@click.option("--out", default="bench-results", show_default=True,
              help="Directory of the JSON report and the PNG chart "
                   "(<dataset>-<date>-<time>.json/.png).")
@click.option("--in-process", is_flag=True,
              help="Measure every backend in this process (no per-backend peak memory).")
@click.option("--timeout", type=float, default=1800, show_default=True,
              help="Seconds one backend at one thread count may take.")
@click.option("--no-negatives", is_flag=True,
              help="Skip the mining options' speed and the false-negative table.")
def bench(corpus: str, queries: str, qrels: str | None, backends: str | None,
          references: str, k: int, threads: str, k1: float, b: float, num_neg: int,
          max_docs: int | None, max_queries: int | None, id_field: str | None,
          text_field: str | None, title_field: str | None, repeat: int, language: str,
          min_overlap: float, out: str, in_process: bool, timeout: float,
          no_negatives: bool) -> None:
    """Hard-negative mining speed of BM25 backends side by side, after checking that they
    agree (top-10 overlap) and how good they are (nDCG@10, recall@k against the qrels)."""
    from rare.bench import BenchConfig, DataSpec, run_bench

    def _names(value: str) -> list[str]:
        return [part.strip() for part in value.split(",") if part.strip()]

    try:
        thread_counts = [int(t) for t in _names(threads)]
    except ValueError:
        raise click.BadParameter(f"expected numbers like 1,2, got {threads!r}",
                                 param_hint="--threads") from None
    try:
        if backends is None:  # every registered retriever but the references
            import rare.retrievers

            backend_names = rare.retrievers.engines()
        else:
            backend_names = _names(backends)
        config = BenchConfig(
            data=DataSpec(corpus, queries, qrels, max_docs, max_queries, id_field, text_field,
                          title_field),
            backends=backend_names, threads=thread_counts, references=_names(references),
            k=k, k1=k1, b=b, num_neg=num_neg, repeat=repeat, out=out,
            min_overlap=min_overlap, timeout=timeout, in_process=in_process,
            language=language, negatives=not no_negatives)
        run_bench(config, echo=click.echo,
                  progress=lambda line: click.echo(line, err=True))
    except RareError as exc:
        raise click.ClickException(str(exc)) from None


def main() -> None:
    try:
        cli(standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort) as exc:
        # click turns Ctrl-C into Abort (raised from the KeyboardInterrupt)
        if isinstance(exc, KeyboardInterrupt) or isinstance(exc.__cause__, KeyboardInterrupt):
            click.echo("\ninterrupted. Every finished LLM reply is kept in the step's journal "
                       "(<cache dir>/*.journal; the ray runner keeps finished blocks and "
                       "their journals in <cache dir>/*.blocks/) and in the response cache: "
                       "run the same command again to resume where it stopped.", err=True)
        else:
            click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
