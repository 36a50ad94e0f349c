"""Strict settings: an unknown or mistyped key fails before any work, naming the key, the
component and the keys it knows, through the Python API, the CLI and a TOML config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shared

import rare.retrievers
import rare.serving
from rare import FileStorage, SettingsError
from rare.pipeline import Pipeline, Step, rare_steps
from rare.settings import check_settings, known_settings

CLI = [sys.executable, "-m", "rare.cli"]
LOCAL = "http://127.0.0.1:9/v1/chat/completions"  # never called: the run stops first


def docs(tmp_path: Path) -> Path:
    path = tmp_path / "docs.jsonl"
    path.write_text(shared("cacm", "cacm.jsonl").read_text().splitlines()[0] + "\n")
    return path


@pytest.mark.parametrize("step,key,known", [
    (Step("BM25HardNeg", run={"num_negs": 5}), "num_negs", "num_neg"),
    (Step("BM25HardNeg", init={"num_negs": 5}), "num_negs", "start_rank"),
    (Step("Doc2Query", run={"input_keys": "text"}), "input_keys", "input_key"),
    (Step("ReasonDistill", init={"max_attempt": 2}), "max_attempt", "max_attempts"),
])
def test_unknown_operator_setting_fails_in_pipeline_init(tmp_path, step, key, known) -> None:
    with pytest.raises(SettingsError) as info:
        Pipeline([step], serving="openai", serving_options={"api_url": LOCAL})
    message = str(info.value)
    assert f"unknown setting {key!r}" in message
    assert f"operator {step.operator!r}" in message
    assert known in message and "Did you mean" in message
    assert not list(tmp_path.iterdir())  # nothing was done


def test_mistyped_operator_setting_names_the_key() -> None:
    with pytest.raises(SettingsError, match=r"BM25HardNeg.*'num_neg'.*integer.*'many'"):
        Pipeline([Step("BM25HardNeg", run={"num_neg": "many"})])


def test_unknown_retriever_setting_through_the_api() -> None:
    with pytest.raises(SettingsError, match=r"unknown setting 'k_1' for retriever 'gensim'.*"
                                            r"known settings:.*\bk1\b"):
        rare.retrievers.create("gensim", k_1=0.9)
    with pytest.raises(SettingsError, match="'k_1'"):
        Pipeline(rare_steps()[1:2], retriever="gensim", retriever_options={"k_1": 0.9})
    # the right key works
    assert rare.retrievers.create("gensim", k1=0.9).k1 == 0.9


def test_unknown_serving_setting_through_the_api() -> None:
    with pytest.raises(SettingsError, match=r"unknown setting 'max_worker' for serving "
                                            r"'openai'.*max_workers"):
        rare.serving.create("openai", api_url=LOCAL, max_worker=3)
    with pytest.raises(SettingsError, match="'max_worker'"):
        Pipeline(rare_steps()[:1], serving="openai",
                 serving_options={"api_url": LOCAL, "max_worker": 3})


def test_reference_run_rejects_unknown_keys(tmp_path) -> None:
    from rare.operators import BM25HardNeg

    storage = FileStorage(str(docs(tmp_path)), cache_path=str(tmp_path / "cache"))
    with pytest.raises(SettingsError, match=r"unknown setting 'num_negs' for operator "
                                            r"BM25HardNeg \(run\(\) settings\)"):
        BM25HardNeg(retriever="gensim").run(storage=storage.step(), num_negs=5)
    assert not (tmp_path / "cache").exists()


def test_known_settings_follow_the_signatures() -> None:
    from rare.operators import BM25HardNeg

    assert "num_neg" in known_settings(BM25HardNeg, "configure")
    assert "index_rows" in known_settings(BM25HardNeg)
    assert {"k1", "b"} <= set(known_settings(rare.retrievers.GensimRetriever))
    # a function's **kwargs keeps it open (the reference-style operators' run())
    def legacy(storage, input_key="text", **_):  # noqa: ANN001, ANN202
        return None
    check_settings(legacy, {"anything": 1}, component="operator legacy", supplied={"storage"})


def _rare(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_cli_flags_reject_unknown_keys(tmp_path) -> None:
    base = ["run", "--input", str(docs(tmp_path)), "--output", "out.jsonl",
            "--text-key", "contents"]
    proc = _rare(*base, "--retriever", "gensim", "-R", "k_1=0.9", cwd=tmp_path)
    assert proc.returncode == 1
    assert "unknown setting 'k_1' for retriever 'gensim'" in proc.stderr
    proc = _rare(*base, "--api-url", LOCAL, "-S", "max_worker=3", cwd=tmp_path)
    assert proc.returncode == 1
    assert "unknown setting 'max_worker' for serving 'openai'" in proc.stderr
    assert "max_workers" in proc.stderr
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("toml,message", [
    ('[[steps]]\noperator = "BM25HardNeg"\nrun = { num_negs = 5 }\n',
     "unknown setting 'num_negs' for operator 'BM25HardNeg' (step 1, run)"),
    ('[[steps]]\noperator = "BM25HardNeg"\nnum_neg = 5\n',
     "steps[0] (BM25HardNeg): unknown key 'num_neg'"),
    ('[pipeline]\nnum_negs = 5\n', "unknown setting 'num_negs' in [pipeline]"),
    ('[retriever]\nname = "gensim"\nk_1 = 0.9\n', "unknown setting 'k_1' for retriever 'gensim'"),
    ('[serving]\nname = "openai"\napi_url = "' + LOCAL + '"\nmax_worker = 3\n',
     "unknown setting 'max_worker' for serving 'openai'"),
    ('[retrievers]\nname = "gensim"\n', "unknown section [retrievers]"),
])
def test_toml_config_rejects_unknown_keys(tmp_path, toml, message) -> None:
    config = tmp_path / "pipeline.toml"
    config.write_text(f'[pipeline]\ninput = "{docs(tmp_path)}"\noutput = "out.jsonl"\n'
                      f'text_key = "contents"\n' + toml.replace("[pipeline]\n", ""))
    proc = _rare("run", "--config", str(config), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert not (tmp_path / "out.jsonl").exists()
