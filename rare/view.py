"""``rare view``: one self-contained HTML page for looking at a run's rows.

The page needs no network and no server: styles, script and rows are inside it. Its summary
counts every row of the file (rows, failed by reason, warnings, grounded share, samples,
tokens, a histogram of reasoning length and one of the hard negatives' BM25 scores where the
run recorded them). Below it every row shows its scenario, question, the documents in the
order the teacher saw them with the positive marked, and the reasoning with the cited labels
highlighted (the positive's in green, a negative's in red); rows can be filtered by failure
reason or grounding and searched by text.

Large runs stay fast to open by paging: the script renders one page of rows at a time
(``page_size``, 25 by default), and the page holds at most ``max_rows`` rows (2,000 by
default; a larger run is represented by a seeded random sample of that many, said on the
page, while the summary still counts every row). The address's fragment picks the initial
view: ``#filter=ungrounded``, ``#q=some+words``, ``#page=2``.
"""

from __future__ import annotations

import html
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rare.formats import iter_records
from rare.report import error_kind, first_error, first_warning
from rare.runinfo import read_run_info

MAX_ROWS = 2000
PAGE_SIZE = 25
#: the longest text kept per document or reasoning on the page (characters)
MAX_CHARS = 20000


@dataclass
class ViewResult:
    path: Path
    rows: int
    shown: int
    summary: dict[str, Any]


def _cut(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS] + " [...]"


def _documents(row: dict[str, Any], text_key: str) -> tuple[list[str], int | None]:
    """The documents in the order the teacher saw them, and the positive's position."""
    shown = row.get("reasoning_documents")
    position = row.get("reasoning_positive_index")
    if isinstance(shown, list) and isinstance(position, int):
        return [str(d) for d in shown], position
    negatives = row.get("hard_negatives")
    docs = [row.get(text_key)] + (list(negatives) if isinstance(negatives, list) else [])
    return [str(d) for d in docs if d is not None], 0 if row.get(text_key) else None


def _compact(index: int, row: dict[str, Any], text_key: str) -> dict[str, Any]:
    docs, position = _documents(row, text_key)
    error = first_error(row)
    warning = first_warning(row)
    return {
        "i": index, "id": row.get("id", f"row{index}"),
        "s": _cut(row.get("scenario")), "q": _cut(row.get("question")),
        "d": [_cut(d) for d in docs], "p": position,
        "r": _cut(row.get("reasoning")), "a": _cut(row.get("reasoning_answer")),
        "c": row.get("reasoning_cited") or [], "g": row.get("reasoning_grounded"),
        "m": row.get("reasoning_answer_match"), "n": row.get("reasoning_samples"),
        "e": error, "k": error_kind(error) if error else None, "w": warning,
    }


def _histogram(values: list[float], bins: int, title: str, unit: str) -> str:
    """An inline SVG bar chart of ``values``."""
    if not values:
        return f'<figure class="hist"><figcaption>{html.escape(title)}: no data</figcaption>' \
               "</figure>"
    low, high = min(values), max(values)
    width = (high - low) / bins or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - low) / width))] += 1
    top = max(counts)
    bar_w, height = 24, 90
    bars = []
    for n, count in enumerate(counts):
        h = round(height * count / top)
        start = low + n * width
        bars.append(f'<rect x="{n * bar_w + 1}" y="{height - h}" width="{bar_w - 2}" '
                    f'height="{h}"><title>{start:.4g}-{start + width:.4g} {unit}: {count}'
                    "</title></rect>")
    return (f'<figure class="hist"><svg viewBox="0 0 {bins * bar_w} {height + 2}" '
            f'width="{bins * bar_w}" height="{height + 2}" role="img">{"".join(bars)}</svg>'
            f"<figcaption>{html.escape(title)}: {len(values)} values, "
            f"{low:.4g} to {high:.4g} {unit}</figcaption></figure>")


def summarise(path: Path, text_key: str, max_rows: int, seed: int) -> tuple[
        dict[str, Any], list[dict[str, Any]]]:
    """Counts over every row, and the rows for the page (all, or a seeded sample)."""
    rng = random.Random(seed)
    failed: Counter[str] = Counter()
    warned: Counter[str] = Counter()
    total = judged = grounded = samples = 0
    lengths: list[float] = []
    scores: list[float] = []
    sample: list[tuple[int, dict[str, Any]]] = []
    for index, row in enumerate(iter_records(path)):
        total += 1
        error = first_error(row)
        if error is not None:
            failed[error_kind(error)] += 1
        elif (warning := first_warning(row)) is not None:
            warned[error_kind(warning)] += 1
        if row.get("reasoning_grounded") is not None:
            judged += 1
            grounded += row.get("reasoning_grounded") is True
        samples += int(row.get("reasoning_samples") or 0)
        if isinstance(row.get("reasoning"), str):
            lengths.append(float(len(row["reasoning"].split())))
        row_scores = row.get("hard_negatives_scores")
        if isinstance(row_scores, list):
            scores.extend(float(s) for s in row_scores if isinstance(s, (int, float)))
        # reservoir sampling keeps a uniform sample of max_rows rows in one pass
        if len(sample) < max_rows:
            sample.append((index, _compact(index, row, text_key)))
        else:
            slot = rng.randrange(index + 1)
            if slot < max_rows:
                sample[slot] = (index, _compact(index, row, text_key))
    sample.sort(key=lambda item: item[0])
    summary = {"rows": total, "failed": sum(failed.values()),
               "failed_by_reason": dict(failed.most_common()),
               "warnings": dict(warned.most_common()), "judged": judged,
               "grounded": grounded, "samples": samples, "lengths": lengths,
               "scores": scores, "shown": len(sample)}
    return summary, [item[1] for item in sample]


def build_page(source: str | Path, out: str | Path | None = None, *,
               max_rows: int = MAX_ROWS, page_size: int = PAGE_SIZE, seed: int = 0,
               text_key: str | None = None) -> ViewResult:
    """Write the page for the run output ``source`` (default: ``<source>.html``)."""
    from rare.export import text_key_of

    source = Path(source)
    target = Path(out) if out is not None else source.with_suffix(".html")
    info = read_run_info(source)
    key = text_key or text_key_of(info)
    summary, rows = summarise(source, key, max_rows, seed)
    usage = (info.get("report") or {}).get("usage") or {}
    tokens = usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0) if usage \
        else None
    teacher = (info.get("teacher") or {}).get("model")
    page = _render(source, summary, rows, tokens, teacher, page_size)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(target)
    public = {k: v for k, v in summary.items() if k not in ("lengths", "scores")}
    return ViewResult(target, summary["rows"], len(rows), public)


def _stat(label: str, value: Any, ident: str) -> str:
    return (f'<div class="stat"><span class="num" id="{ident}">{html.escape(str(value))}'
            f'</span><span class="lbl">{html.escape(label)}</span></div>')


def _render(source: Path, summary: dict[str, Any], rows: list[dict[str, Any]],
            tokens: int | None, teacher: str | None, page_size: int) -> str:
    judged, grounded = summary["judged"], summary["grounded"]
    share = f"{100 * grounded / judged:.0f}%" if judged else "n/a"
    stats = [
        _stat("rows", summary["rows"], "count-rows"),
        _stat("failed", summary["failed"], "count-failed"),
        _stat("with a warning", sum(summary["warnings"].values()), "count-warnings"),
        _stat(f"grounded of {judged} judged", grounded, "count-grounded"),
        _stat("grounded share", share, "grounded-share"),
        _stat("samples asked", summary["samples"], "count-samples"),
        _stat("tokens", "n/a" if tokens is None else tokens, "count-tokens"),
    ]
    reasons = "".join(f'<li><span class="reason">{html.escape(k)}</span> '
                      f'<span class="reason-count">{v}</span></li>'
                      for k, v in summary["failed_by_reason"].items())
    warnings = "".join(f'<li><span class="reason">{html.escape(k)}</span> '
                       f'<span class="reason-count">{v}</span></li>'
                       for k, v in summary["warnings"].items())
    options = ['<option value="">all rows</option>', '<option value="ok">not failed</option>',
               '<option value="grounded">grounded</option>',
               '<option value="ungrounded">ungrounded</option>',
               '<option value="failed">failed (any reason)</option>',
               '<option value="warning">with a warning</option>']
    options += [f'<option value="failed:{html.escape(k)}">failed: {html.escape(k)}</option>'
                for k in summary["failed_by_reason"]]
    sampled = ""
    if summary["shown"] < summary["rows"]:
        sampled = (f'<p class="note" id="sample-note">Showing a seeded random sample of '
                   f'{summary["shown"]} of {summary["rows"]} rows (rare view --max-rows); '
                   "the counts above are over every row.</p>")
    data = json.dumps({"rows": rows, "pageSize": page_size}, ensure_ascii=False)
    data = data.replace("</", "<\\/").replace("<!--", "<\\!--")
    title = f"rare view: {source.name}"
    return _TEMPLATE.format(
        title=html.escape(title), source=html.escape(str(source)),
        teacher=html.escape(teacher or "unknown"), stats="".join(stats),
        reasons=reasons or "<li>none</li>", warnings=warnings or "<li>none</li>",
        length_hist=_histogram(summary["lengths"], 20, "reasoning length", "words"),
        score_hist=_histogram(summary["scores"], 20, "hard negatives' BM25 scores", "")
        if summary["scores"] else "",
        options="".join(options), sampled=sampled, data=data, css=_CSS, js=_JS)


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header,main{max-width:1100px;margin:0 auto;padding:12px 20px}
h1{font-size:20px;margin:8px 0} .src{color:#667;font-size:12px;word-break:break-all}
.stats{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0}
.stat{background:#fff;border:1px solid #dde;border-radius:6px;padding:8px 12px;min-width:90px}
.num{display:block;font-size:20px;font-weight:600} .lbl{color:#667;font-size:12px}
.cols{display:flex;flex-wrap:wrap;gap:24px} .cols ul{margin:4px 0;padding-left:18px}
.hist svg rect{fill:#5b7fd6} .hist figcaption{font-size:12px;color:#556}
.hist{margin:6px 0}
.controls{position:sticky;top:0;background:#f6f7f9;padding:8px 0;display:flex;gap:8px;
 flex-wrap:wrap;align-items:center;border-bottom:1px solid #dde;z-index:1}
.controls input{flex:1;min-width:200px;padding:5px} .controls select{padding:5px}
.row{background:#fff;border:1px solid #dde;border-radius:6px;margin:12px 0;padding:10px 14px}
.row.failed{border-left:5px solid #c33} .row.ungrounded{border-left:5px solid #d90}
.row.grounded{border-left:5px solid #2a2}
.meta{font-size:12px;color:#667;display:flex;gap:10px;flex-wrap:wrap}
.badge{border-radius:10px;padding:0 8px;background:#eef} .badge.bad{background:#fdd}
.badge.good{background:#dfd} .badge.warn{background:#ffe6b3}
.q{font-weight:600;margin:6px 0} .s{color:#334}
details{margin:4px 0} summary{cursor:pointer;color:#335}
.doc{white-space:pre-wrap;border:1px solid #e4e6ee;border-radius:4px;padding:6px;margin:4px 0;
 font-size:13px;max-height:260px;overflow:auto}
.doc.positive{border-color:#2a2;background:#f3fbf3}
.reasoning{white-space:pre-wrap;background:#fafbff;border:1px solid #e4e6ee;padding:8px;
 border-radius:4px;font-size:13px}
mark.cite{background:#fde2e2;padding:0 2px} mark.cite.pos{background:#c9f2c9}
.err{color:#b22;font-size:13px} .warn{color:#a60;font-size:13px}
.pager{display:flex;gap:8px;align-items:center;margin:12px 0}
.note{color:#a60}
"""

_JS = r"""
(function(){
const DATA = JSON.parse(document.getElementById('rows-data').textContent);
const rows = DATA.rows, size = DATA.pageSize;
let page = 0, matching = rows;
const $ = id => document.getElementById(id);
const esc = s => String(s == null ? '' : s).replace(/[&<>"']/g,
  c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
const DOC = '(?:documents?|docs?)\\.?\\s*';
const CITE = new RegExp('\\b' + DOC + '#?\\s*\\d+(?:\\s*(?:,|&amp;|/|\\band\\b|\\bor\\b)\\s*' +
  '(?:' + DOC + ')?#?\\s*\\d+)*', 'gi');
function highlight(text, positive){
  return esc(text).replace(CITE, m => {
    const nums = (m.match(/\d+/g) || []).map(Number);
    const pos = positive != null && nums.includes(positive + 1);
    return '<mark class="cite' + (pos ? ' pos' : '') + '">' + m + '</mark>';
  });
}
function state(r){
  if (r.e) return 'failed';
  if (r.g === true) return 'grounded';
  if (r.g === false) return 'ungrounded';
  return 'unjudged';
}
function keep(r, filter, words){
  if (filter === 'ok' && r.e) return false;
  if (filter === 'grounded' && !(r.g === true && !r.e)) return false;
  if (filter === 'ungrounded' && r.g !== false) return false;
  if (filter === 'failed' && !r.e) return false;
  if (filter === 'warning' && !r.w) return false;
  if (filter.startsWith('failed:') && r.k !== filter.slice(7)) return false;
  if (words.length){
    const hay = [r.q, r.s, r.r, r.id, r.e || ''].concat(r.d).join('\n').toLowerCase();
    return words.every(w => hay.includes(w));
  }
  return true;
}
function card(r){
  const st = state(r);
  const docs = r.d.map((d, j) => '<details' + (j === r.p ? ' open' : '') + '><summary>' +
    'Document ' + (j + 1) + (j === r.p ? ' <b class="badge good">positive</b>' : '') +
    '</summary><div class="doc' + (j === r.p ? ' positive' : '') + '">' + esc(d) +
    '</div></details>').join('');
  const badges = ['<span class="badge' + (st === 'grounded' ? ' good' : st === 'unjudged' ?
    '' : ' bad') + '">' + st + '</span>'];
  if (r.n) badges.push('<span class="badge">samples ' + r.n + '</span>');
  if (r.c && r.c.length) badges.push('<span class="badge">cites ' + esc(r.c.join(', ')) +
    '</span>');
  if (r.m === true) badges.push('<span class="badge good">answer matches</span>');
  if (r.m === false) badges.push('<span class="badge bad">wrong answer</span>');
  if (r.w) badges.push('<span class="badge warn">warning</span>');
  return '<article class="row ' + st + '" data-index="' + r.i + '"><div class="meta">' +
    '<span>row ' + r.i + '</span><span>' + esc(r.id) + '</span>' + badges.join('') +
    '</div>' + (r.e ? '<div class="err">' + esc(r.e) + '</div>' : '') +
    (r.w ? '<div class="warn">' + esc(r.w) + '</div>' : '') +
    '<div class="s"><b>Scenario:</b> ' + esc(r.s) + '</div>' +
    '<div class="q">Question: ' + esc(r.q) + '</div>' + docs +
    (r.r ? '<div class="reasoning">' + highlight(r.r, r.p) + '</div>' : '') + '</article>';
}
function render(){
  const pages = Math.max(1, Math.ceil(matching.length / size));
  page = Math.min(Math.max(0, page), pages - 1);
  const slice = matching.slice(page * size, (page + 1) * size);
  $('rows').innerHTML = slice.map(card).join('');
  $('matching').textContent = matching.length;
  $('page-label').textContent = 'page ' + (page + 1) + ' of ' + pages;
  $('prev').disabled = page === 0; $('next').disabled = page >= pages - 1;
}
function apply(){
  const words = $('search').value.toLowerCase().split(/\s+/).filter(Boolean);
  matching = rows.filter(r => keep(r, $('filter').value, words));
  page = 0; render();
}
$('filter').addEventListener('change', apply);
$('search').addEventListener('input', apply);
$('prev').addEventListener('click', () => { page--; render(); window.scrollTo(0, 0); });
$('next').addEventListener('click', () => { page++; render(); window.scrollTo(0, 0); });
const hash = new URLSearchParams(location.hash.slice(1));
if (hash.get('filter') !== null) $('filter').value = hash.get('filter');
if (hash.get('q') !== null) $('search').value = hash.get('q');
apply();
if (hash.get('page')) { page = Number(hash.get('page')) - 1; render(); }
document.body.dataset.ready = '1';
})();
"""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{css}</style></head>
<body>
<header>
<h1>{title}</h1>
<div class="src">{source} &middot; teacher: {teacher}</div>
<section class="stats">{stats}</section>
<section class="cols">
<div><b>Failed rows by reason</b><ul id="failed-reasons">{reasons}</ul></div>
<div><b>Rows kept with a warning</b><ul id="warning-reasons">{warnings}</ul></div>
<div>{length_hist}{score_hist}</div>
</section>
{sampled}
</header>
<main>
<div class="controls">
<select id="filter" aria-label="filter">{options}</select>
<input id="search" type="search" placeholder="search question, scenario, documents, reasoning"
 aria-label="search">
<span><span id="matching"></span> matching</span>
</div>
<div id="rows"></div>
<div class="pager"><button id="prev">previous</button><span id="page-label"></span>
<button id="next">next</button></div>
</main>
<script type="application/json" id="rows-data">{data}</script>
<script>{js}</script>
</body></html>
"""
