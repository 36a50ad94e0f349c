"""``rare view``: the page of a real run, opened in a real headless browser (Chromium).

Chromium comes from Debian's packages: ``make test`` installs it, and so does this module
when it runs as root on a machine with apt; elsewhere without it the browser tests skip
and say why.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from test_export import rare, run  # noqa: F401 - the run fixture: a real pipeline output

from rare.report import error_kind, first_error


def _install_chromium() -> str | None:
    """Install Debian's chromium when we can (root, apt); its path, else None."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        if subprocess.run(cmd, capture_output=True, env=env, timeout=900).returncode != 0:
            return None
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or _install_chromium()
    if exe is None:
        pytest.skip("no chromium, and it cannot be installed here (needs root and apt-get): "
                    "apt-get install chromium to run the browser tests of rare view")
    return exe


def browse(chromium: str, url: str, tmp_path: Path, *extra: str) -> str:
    """Load ``url`` headless, let its script run, and return the DOM (stdout)."""
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", *extra, url],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def articles(dom: str) -> list[int]:
    return [int(i) for i in re.findall(r'<article class="row [a-z]+" data-index="(\d+)"', dom)]


def stat(dom: str, ident: str) -> str:
    match = re.search(rf'id="{ident}">([^<]*)<', dom)
    assert match, ident
    return match.group(1)


@pytest.fixture(scope="module")
def page(run, tmp_path_factory) -> Path:  # noqa: F811 - the imported fixture
    target = tmp_path_factory.mktemp("view") / "run.html"
    proc = rare("view", str(run["out"]), "--out", str(target))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"rare view: 10 rows -> {target}" in proc.stdout
    return target


def test_page_is_self_contained(page: Path) -> None:
    text = page.read_text()
    assert "<script src" not in text and "<link" not in text and "@import" not in text
    assert not re.search(r"""(src|href)=["']?https?:""", text)


def test_page_in_a_browser_shows_every_row_and_the_file_counts(
        chromium: str, page: Path, tmp_path: Path,
        run: dict[str, Any]) -> None:  # noqa: F811
    rows = run["rows"]
    shot = tmp_path / "view.png"
    browse(chromium, page.as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1280,2200")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    dom = browse(chromium, page.as_uri(), tmp_path, "--dump-dom")
    assert 'data-ready="1"' in dom  # the script ran to its end
    assert articles(dom) == list(range(len(rows)))  # one entry per row, in order
    failed = Counter(error_kind(e) for r in rows if (e := first_error(r)))
    assert int(stat(dom, "count-rows")) == len(rows)
    assert int(stat(dom, "count-failed")) == sum(failed.values()) == 1
    assert int(stat(dom, "count-grounded")) == sum(r["reasoning_grounded"] is True
                                                    for r in rows) == 8
    assert int(stat(dom, "count-samples")) == sum(r["reasoning_samples"] for r in rows)
    for reason, count in failed.items():
        assert (f'<span class="reason">{reason}</span> <span class="reason-count">{count}'
                in dom)
    # the positive is marked, and its label highlighted where the reasoning cites it
    shown = dom.split('<div id="rows">', 1)[1].split("<script", 1)[0]
    assert shown.count('<b class="badge good">positive</b>') == len(rows)
    assert '<mark class="cite pos">Document' in shown


def test_filters_search_and_paging(chromium: str, page: Path, tmp_path: Path,
                                   run: dict[str, Any]) -> None:  # noqa: F811
    rows = run["rows"]
    dom = browse(chromium, page.as_uri() + "#filter=ungrounded", tmp_path, "--dump-dom")
    assert articles(dom) == [i for i, r in enumerate(rows) if r["reasoning_grounded"] is False]
    dom = browse(chromium, page.as_uri() + "#filter=failed:unusable%20reply", tmp_path,
                 "--dump-dom")
    assert articles(dom) == [i for i, r in enumerate(rows) if r["doc2query_error"]]
    word = rows[3]["question"].split()[1]
    dom = browse(chromium, page.as_uri() + f"#q={word}", tmp_path, "--dump-dom")
    expected = [i for i, r in enumerate(rows) if word.lower() in "\n".join(
        str(v) for v in (r["question"], r["scenario"], r["reasoning"], r["id"],
                         first_error(r) or "", *(r["reasoning_documents"] or []))).lower()]
    assert 3 in articles(dom) and articles(dom) == expected

    paged = page.with_name("paged.html")
    assert rare("view", str(run["out"]), "--out", str(paged), "--page-size", "4",
                "--max-rows", "6").returncode == 0
    dom = browse(chromium, paged.as_uri() + "#page=2", tmp_path, "--dump-dom")
    assert len(articles(dom)) == 2 and "page 2 of 2" in dom  # 6 of 10 rows, 4 a page
    assert "Showing a seeded random sample of 6 of 10 rows" in dom
    assert int(stat(dom, "count-rows")) == 10  # the summary counts every row
