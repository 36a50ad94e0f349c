"""The plugin hooks: each called through pluggy (so tracing shows it), each tested and
documented (meta-tests in the spirit of datasette's)."""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pluggy
import pytest

import rare
import rare.operators
import rare.retrievers
import rare.serving
from rare import LLMServing, Operator, PluginError, Retriever, hookimpl, hookspecs
from rare.export import ExportContext, Exporter
from rare.export import export as export_rows
from rare.plugins import get_registry, plugin_info, pm
from rare.retriever import Hits

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def _hook_names() -> list[str]:
    """Every hook spec in rare/hookspecs.py (what pluggy's spec marker tagged)."""
    return sorted(name for name, value in vars(hookspecs).items()
                  if callable(value) and hasattr(value, "rare_spec"))


def test_hookspecs_are_found() -> None:
    names = _hook_names()
    assert len(names) >= 3 and all(n.startswith("register_") for n in names)
    # hook callers with a spec (a rejected plugin's misspelt hook leaves one without)
    assert set(names) == {name for name in dir(pm.hook) if not name.startswith("_")
                          and getattr(pm.hook, name).spec is not None}


# -- meta-tests ------------------------------------------------------------------------------

def _test_functions() -> set[str]:
    found: set[str] = set()
    for path in TESTS.rglob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found.update(node.name for node in ast.walk(tree)
                     if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                     and node.name.startswith("test_"))
    return found


@pytest.mark.parametrize("hook", _hook_names())
def test_every_hook_has_a_test(hook: str) -> None:
    """A test function named ``test_hook_<hook>`` exists somewhere under tests/."""
    assert f"test_hook_{hook}" in _test_functions(), (
        f"hook {hook!r} (rare/hookspecs.py) has no test: write test_hook_{hook} under tests/"
    )


@pytest.mark.parametrize("hook", _hook_names())
def test_every_hook_is_documented(hook: str) -> None:
    """README.md has a heading or a bullet naming the hook, with the spec's arguments."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    lines = [line for line in readme.splitlines()
             if re.match(r"\s*(#+|[-*])\s", line) and re.search(rf"\b{hook}\b", line)]
    assert lines, f"README.md has no heading or bullet naming the hook {hook!r}"
    params = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    assert any(f"`{hook}({params})`" in line for line in lines), (
        f"README.md's entry for {hook!r} does not show its signature `{hook}({params})`: "
        f"{lines}"
    )
    assert (getattr(hookspecs, hook).__doc__ or "").strip(), f"{hook} has no docstring"


# -- each hook, called through pluggy --------------------------------------------------------

@pytest.fixture
def calls() -> Iterator[list[tuple[str, list[str], dict[str, Any]]]]:
    """Every hook call pluggy makes while the test runs: (hook, plugins called, kwargs)."""
    seen: list[tuple[str, list[str], dict[str, Any]]] = []

    def before(hook_name: str, impls: Sequence[pluggy.HookImpl],
               kwargs: Mapping[str, Any]) -> None:
        seen.append((hook_name, [impl.plugin_name for impl in impls], dict(kwargs)))

    def after(*_: object) -> None:
        pass

    undo = pm.add_hookcall_monitoring(before, after)
    try:
        yield seen
    finally:
        undo()


@pytest.fixture
def in_test_plugin() -> Iterator[Any]:
    registered: list[object] = []

    def add(plugin: object, name: str) -> None:
        pm.register(plugin, name=name)
        registered.append(plugin)

    yield add
    for plugin in registered:
        pm.unregister(plugin)


class Upper(Operator):
    def run(self, storage: Any, **kwargs: Any) -> None:
        storage.write(storage.read("dict"))


class Nothing(Retriever):
    name = "nothing"

    def index(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        self._check_open()

    def search_batch(self, queries: Sequence[str], k: int,
                     threads: int | None = None) -> list[Hits]:
        self._check_open()
        return [[] for _ in queries]

    def get_texts(self, ids: Sequence[str]) -> list[str | None]:
        self._check_open()
        return [None for _ in ids]

    def __len__(self) -> int:
        self._check_open()
        return 0


class Silent(LLMServing):
    pass


def _assert_called_through_pluggy(calls: list[tuple[str, list[str], dict[str, Any]]],
                                  hook: str, plugin: str) -> None:
    mine = [c for c in calls if c[0] == hook and c[1] == [plugin]]
    assert len(mine) == 1, calls
    register = mine[0][2]["register"]
    assert f"for plugin {plugin!r}" in repr(register)
    # One call per plugin that implements the hook, each to that plugin alone.
    impls = getattr(pm.hook, hook).get_hookimpls()
    assert sorted(c[1][0] for c in calls if c[0] == hook) == sorted(
        i.plugin_name for i in impls)


def test_hook_register_operators(calls, in_test_plugin) -> None:
    class Plugin:
        @hookimpl
        def register_operators(self, register: hookspecs.Register) -> None:
            register(Upper, name="Shout", aliases=["Loud"])

    in_test_plugin(Plugin(), "in-test-ops")
    registry = get_registry("operators")
    assert rare.operators.Shout is Upper and rare.operators.Loud is Upper
    assert registry.entries["Shout"].plugin == "in-test-ops"
    assert registry.entries["Doc2Query"].plugin == "stages"
    _assert_called_through_pluggy(calls, "register_operators", "in-test-ops")


def test_hook_register_retrievers(calls, in_test_plugin) -> None:
    class Plugin:
        @hookimpl
        def register_retrievers(self, register: hookspecs.Register) -> None:
            register(Nothing)  # named by its class name

    in_test_plugin(Plugin(), "in-test-retrievers")
    with rare.retrievers.create("Nothing", k1=0.5) as retriever:
        assert isinstance(retriever, Nothing) and retriever.k1 == 0.5
        assert retriever.search_batch(["q"], 3) == [[]]
    assert get_registry("retrievers").entries["Nothing"].plugin == "in-test-retrievers"
    _assert_called_through_pluggy(calls, "register_retrievers", "in-test-retrievers")


def test_hook_register_servings(calls, in_test_plugin) -> None:
    class Plugin:
        @hookimpl
        def register_servings(self) -> None:  # may leave out `register`; registers nothing
            pass

    class Other:
        @hookimpl
        def register_servings(self, register: hookspecs.Register) -> None:
            register(Silent, name="silent")

    in_test_plugin(Plugin(), "in-test-empty")
    in_test_plugin(Other(), "in-test-servings")
    assert rare.serving.silent is Silent
    info = {p["name"]: p for p in plugin_info()}
    assert info["in-test-servings"]["registered"]["servings"] == ["silent"]
    assert info["in-test-empty"]["registered"]["servings"] == []
    _assert_called_through_pluggy(calls, "register_servings", "in-test-servings")
    _assert_called_through_pluggy(calls, "register_servings", "in-test-empty")


class Recording:
    """A runner that runs nothing and remembers what it was given."""

    runs: list[tuple[Any, ...]] = []

    def __init__(self, label: str = "x") -> None:
        self.label = label

    def run(self, pipeline: Any, storage: Any, output_path: Any, on_stage: Any = None) -> str:
        Recording.runs.append((self.label, pipeline, storage.first_entry_file_name,
                               str(output_path)))
        return "report"


def test_hook_register_runners(calls, in_test_plugin, tmp_path) -> None:
    import rare.runners
    from rare.pipeline import Pipeline, Step

    class Plugin:
        @hookimpl
        def register_runners(self, register: hookspecs.Register) -> None:
            register(Recording, name="recording", aliases=["rec"])

    in_test_plugin(Plugin(), "in-test-runners")
    registry = get_registry("runners")
    assert registry.entries["recording"].plugin == "in-test-runners"
    assert registry.entries["local"].plugin == "rare.runner"  # the core's own, built in
    assert rare.runners.rec is Recording and "recording" in rare.runners.names()
    pipeline = Pipeline([Step("BM25HardNeg")], runner="rec", runner_options={"label": "y"})
    assert pipeline.run(tmp_path / "in.jsonl", tmp_path / "out.jsonl",
                        cache_path=tmp_path / "cache") == "report"
    assert Recording.runs == [("y", pipeline, str(tmp_path / "in.jsonl"),
                               str(tmp_path / "out.jsonl"))]
    with pytest.raises(rare.SettingsError, match=r"unknown setting 'lable' for runner 'rec'"):
        Pipeline([Step("BM25HardNeg")], runner="rec", runner_options={"lable": "y"})
    _assert_called_through_pluggy(calls, "register_runners", "in-test-runners")


class UpperJsonl(Exporter):
    """Questions in capitals, one JSON line each (a third party's format)."""

    required_columns = ("question",)

    def skip(self, row: dict[str, Any]) -> str | None:
        return None if row.get("question") else "no question"

    def write(self, splits: dict[str, list[dict[str, Any]]], ctx: ExportContext) -> list[Path]:
        path = ctx.out / "upper.jsonl"
        path.write_text("".join(json.dumps({"q": r["question"].upper()}) + "\n"
                                for rows in splits.values() for r in rows))
        return [path]


def test_hook_register_exporters(calls, in_test_plugin, tmp_path) -> None:
    class Plugin:
        @hookimpl
        def register_exporters(self, register: hookspecs.Register) -> None:
            register(UpperJsonl, name="upper-jsonl", aliases=["upper"])

    in_test_plugin(Plugin(), "in-test-exporters")
    registry = get_registry("exporters")
    assert registry.entries["upper-jsonl"].plugin == "in-test-exporters"
    info = {p["name"]: p for p in plugin_info()}
    assert info["in-test-exporters"]["registered"]["exporters"] == ["upper-jsonl"]
    source = tmp_path / "run.jsonl"
    source.write_text(json.dumps({"question": "why?"}) + "\n"
                      + json.dumps({"question": None, "x_error": "skipped: no text"}) + "\n")
    result = export_rows(source, "upper", tmp_path / "out")
    assert (tmp_path / "out" / "upper.jsonl").read_text() == '{"q": "WHY?"}\n'
    assert result.counts["left_out"] == {"failed: skipped": 1}
    _assert_called_through_pluggy(calls, "register_exporters", "in-test-exporters")


def test_registration_order_is_plugin_order(in_test_plugin) -> None:
    """Plugins' hooks run in the order the plugins were registered (first party first)."""
    order: list[str] = []

    def plugin(tag: str) -> object:
        class P:
            @hookimpl
            def register_operators(self, register: hookspecs.Register) -> None:
                order.append(tag)

        return P()

    in_test_plugin(plugin("first"), "order-1")
    in_test_plugin(plugin("second"), "order-2")
    get_registry("operators")
    assert order == ["first", "second"]


def test_failing_hook_names_its_plugin(in_test_plugin) -> None:
    class Broken:
        @hookimpl
        def register_retrievers(self, register: hookspecs.Register) -> None:
            raise RuntimeError("no index here")

    in_test_plugin(Broken(), "broken-plugin")
    with pytest.raises(PluginError, match=r"plugin 'broken-plugin' failed in "
                                          r"register_retrievers: RuntimeError\('no index here'"):
        get_registry("retrievers")


def test_duplicate_across_plugins_names_both(in_test_plugin) -> None:
    class Clash:
        @hookimpl
        def register_retrievers(self, register: hookspecs.Register) -> None:
            register(Nothing, name="gensim")

    in_test_plugin(Clash(), "clash-retrievers")
    with pytest.raises(PluginError, match=r"name 'gensim' is registered twice: by plugin "
                                          r"'gensim' and by plugin 'clash-retrievers'"):
        get_registry("retrievers")


# -- RARE_TRACE_HOOKS ------------------------------------------------------------------------

def _rare_plugins(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "RARE_TRACE_HOOKS"}
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "rare.cli", "plugins", "--json"],
                          capture_output=True, text=True, env=full_env, cwd=REPO, timeout=300)


def test_trace_hooks_prints_every_hook_call() -> None:
    traced = _rare_plugins({"RARE_TRACE_HOOKS": "1"})
    assert traced.returncode == 0, traced.stderr
    info = json.loads(traced.stdout)  # the trace goes to stderr, not into the JSON
    err = traced.stderr
    for hook in _hook_names():
        kind = hook.removeprefix("register_")
        # pluggy's trace: the call, its `register` argument (naming the plugin), its end.
        calls = re.findall(rf"^ *{hook} \[hook\]\n *register: <register {kind} for plugin "
                           rf"'([^']+)'>\n", err, re.MULTILINE)
        finished = re.findall(rf"^ *finish {hook} --> ", err, re.MULTILINE)
        assert calls and len(finished) == len(calls), (hook, err[:3000])
        assert len(set(calls)) == len(calls), f"a plugin's {hook} was called twice: {calls}"
        for plugin in info:
            registered = plugin["registered"][kind]
            if registered:
                assert plugin["name"] in calls, (hook, plugin["name"], calls)
            for name in registered:  # and every name it registered, with its plugin
                assert re.search(rf"^ *{kind} {re.escape(name)}( \(aliases: [^)]+\))? from plugin "
                                 rf"'{re.escape(plugin['name'])}' \[registry\]$",
                                 err, re.MULTILINE), (kind, name, plugin["name"])
    assert "stages" in {p["name"] for p in info}
    assert re.search(r"register: <register operators for plugin 'stages'>", err)
    assert re.search(r"operators Doc2Query \(aliases: RAREDoc2QueryGenerator\) from plugin "
                     r"'stages' \[registry\]", err)


def test_no_trace_without_the_variable() -> None:
    quiet = _rare_plugins({})
    assert quiet.returncode == 0, quiet.stderr
    assert "[hook]" not in quiet.stderr and "[registry]" not in quiet.stderr
