from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import rare.operators
import rare.retrievers
import rare.serving
from rare import Operator, PluginError, UnknownNameError, hookimpl
from rare.plugins import Registry, get_registry, plugin_info, pm

REPO = Path(__file__).resolve().parents[1]
RARE = [sys.executable, "-m", "rare.cli"]


class Echo(Operator):
    def run(self, storage, **kwargs):
        storage.write(storage.read("dict"))


def test_first_party_plugins_register_through_entry_points() -> None:
    names = {p["name"]: p for p in plugin_info()}
    assert {"Doc2Query", "BM25HardNeg", "ReasonDistill"} <= set(
        names["stages"]["registered"]["operators"])
    assert names["stages"]["version"] == "0.1.0"
    assert "gensim" in rare.retrievers.names()


def test_registry_is_the_namespace() -> None:
    from rare.operators import Doc2Query, RAREDoc2QueryGenerator
    from rare.serving import APILLMServing_request

    assert Doc2Query is RAREDoc2QueryGenerator
    assert APILLMServing_request.__name__ == "APILLMServing_request"
    retriever = rare.retrievers.create("gensim", k1=0.9, b=0.4)
    assert (retriever.k1, retriever.b) == (0.9, 0.4)
    assert rare.retrievers.GensimRetriever is type(retriever)  # the class name works too
    assert rare.serving.openai is APILLMServing_request  # and so do aliases


def test_in_process_plugin_registers_and_unregisters() -> None:
    class Plugin:
        @hookimpl
        def register_operators(self, register):
            register(Echo, name="Echo")

    plugin = Plugin()
    pm.register(plugin, name="in-test")
    try:
        assert rare.operators.Echo is Echo
        info = {p["name"]: p for p in plugin_info()}
        assert info["in-test"]["registered"]["operators"] == ["Echo"]
    finally:
        pm.unregister(plugin)
    with pytest.raises(UnknownNameError):
        rare.operators.Echo  # noqa: B018


def test_duplicate_name_names_both_plugins() -> None:
    class Clash:
        @hookimpl
        def register_operators(self, register):
            register(Echo, name="Doc2Query")

    plugin = Clash()
    pm.register(plugin, name="clash-plugin")
    try:
        with pytest.raises(PluginError) as err:
            get_registry("operators")
        assert "'Doc2Query'" in str(err.value)
        assert "'stages'" in str(err.value) and "'clash-plugin'" in str(err.value)
    finally:
        pm.unregister(plugin)
    assert get_registry("operators").get("Doc2Query").__name__ == "Doc2Query"


def test_unknown_name_lists_known_names_and_install_hint() -> None:
    with pytest.raises(UnknownNameError) as err:
        rare.retrievers.create("nosuch")
    assert "unknown retriever 'nosuch'" in str(err.value)
    assert "gensim" in str(err.value)
    empty = Registry("retrievers")  # as if the plugin were not installed
    with pytest.raises(UnknownNameError, match="known retrievers: none. Install it with: "
                                               "pip install rare-pyserini"):
        empty.get("pyserini")


def test_misspelled_hook_fails_at_registration() -> None:
    class Typo:
        @hookimpl
        def register_operator(self, register):  # missing "s"
            pass

    plugin = Typo()
    pm.register(plugin, name="typo")
    try:
        with pytest.raises(Exception, match="unknown hook 'register_operator'"):
            pm.check_pending()
    finally:
        pm.unregister(plugin)


def _rare(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([*RARE, *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd or REPO, timeout=300)


def test_block_and_allow_lists() -> None:
    blocked = _rare("plugins", "--json", env={"RARE_DISABLE_PLUGINS": "gensim"})
    assert blocked.returncode == 0, blocked.stderr
    assert "gensim" not in {p["name"] for p in json.loads(blocked.stdout)}
    allowed = _rare("plugins", "--json", env={"RARE_PLUGINS": "rare-stages"})
    assert [p["name"] for p in json.loads(allowed.stdout)] == ["stages"]


@pytest.fixture(scope="module")
def wordcount_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The third-party plugin under tests/plugins, installed with pip into its own folder."""
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(REPO / "tests" / "plugins" / "rare-wordcount")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return target


def test_pip_installed_plugin_is_listed_and_used_by_a_pipeline(wordcount_site: Path,
                                                                tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(wordcount_site)}
    listing = _rare("plugins", "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    info = {p["name"]: p for p in json.loads(listing.stdout)}
    assert info["wordcount"]["version"] == "0.3.1"
    assert info["wordcount"]["distribution"] == "rare-wordcount"
    assert info["wordcount"]["registered"]["operators"] == ["WordCount"]

    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"text": "one two three"}\n{"text": "four"}\n')
    config = tmp_path / "pipeline.toml"
    config.write_text(f"""
[pipeline]
input = "{docs}"
output = "{tmp_path / 'out.json'}"
cache_path = "{tmp_path / 'cache'}"

[[steps]]
operator = "WordCount"
run = {{ output_key = "n_words" }}
""")
    run = _rare("run", "--config", str(config), env=env)
    assert run.returncode == 0, run.stderr
    out = json.loads((tmp_path / "out.json").read_text())
    assert [r["n_words"] for r in out] == [3, 1]
    assert "rows in 2, rows out 2, failed rows 0" in run.stdout

    missing = _rare("run", "--config", str(config))  # without the plugin on the path
    assert missing.returncode == 1
    assert "unknown operator 'WordCount'" in missing.stderr
    assert "Traceback" not in missing.stderr
