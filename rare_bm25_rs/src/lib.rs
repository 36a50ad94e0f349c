//! rare_bm25_rs: a tantivy BM25 index and a batch hard-negative miner for rare-synth.
//!
//! The Rust API lives in [`index`]; this file is the thin PyO3 layer (`rare_bm25_rs._native`).
//! Every call converts its Python inputs to owned Rust data, releases the GIL for the whole
//! batch and spreads the queries over a rayon pool; errors come back as `Bm25Error`.

pub mod analysis;
pub mod cjk;
pub mod error;
pub mod index;
pub mod mining;
pub mod neardup;
pub mod porter;
pub mod scoring;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::analysis::Analyzer;
use crate::error::{Error, ErrorKind};
use crate::index::{Bm25Index, MineRequest, Options, Pruning, Scorer};
use crate::mining::{Margin, Plan, Sampling};
use crate::neardup::NearDupRule;

create_exception!(
    rare_bm25_rs._native,
    Bm25Error,
    PyValueError,
    "Raised for bad arguments, unusable index folders and index failures; `kind` says which."
);

fn to_py(err: Error) -> PyErr {
    Python::attach(|py| {
        let py_err = Bm25Error::new_err(err.message.clone());
        // Best effort: the message alone is enough if the attribute cannot be set.
        let _ = py_err.value(py).setattr("kind", err.kind_name());
        py_err
    })
}

/// Run `work` without the GIL; a panic becomes an `internal` error, never a Python crash.
fn detached<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    F: FnOnce() -> error::Result<T> + Send,
    T: Send,
{
    let outcome = py.detach(|| {
        catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::new(
                ErrorKind::Internal,
                format!("internal error in rare_bm25_rs (please report): {what}"),
            ))
        })
    });
    outcome.map_err(to_py)
}

fn positive(name: &str, value: i64) -> PyResult<usize> {
    if value < 1 {
        return Err(to_py(Error::invalid(format!(
            "{name} must be >= 1, got {value}"
        ))));
    }
    usize::try_from(value).map_err(|_| to_py(Error::invalid(format!("{name} is too large"))))
}

/// What `Bm25Index.mine` returns (see there).
type MineOutput = (
    Vec<Vec<String>>,
    Vec<Vec<f32>>,
    Vec<Vec<usize>>,
    Vec<Option<f32>>,
    Vec<bool>,
    (u64, u64, u64, u64),
);

fn threads(value: Option<i64>) -> PyResult<usize> {
    match value {
        None => Ok(index::default_threads()),
        Some(n) => positive("threads", n),
    }
}

/// A BM25 index over `(id, text)` pairs, in RAM or in a folder.
#[pyclass(frozen, name = "Bm25Index", module = "rare_bm25_rs._native")]
struct PyBm25Index {
    inner: Bm25Index,
}

#[pymethods]
impl PyBm25Index {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (path=None, k1=1.2, b=0.75, scorer="auto", writer_heap_bytes=256_000_000, writer_threads=None, analyzer=None, language=None))]
    fn new(
        py: Python<'_>,
        path: Option<PathBuf>,
        k1: f64,
        b: f64,
        scorer: &str,
        writer_heap_bytes: i64,
        writer_threads: Option<i64>,
        analyzer: Option<&str>,
        language: Option<String>,
    ) -> PyResult<Self> {
        let analyzer = analyzer.map(parse_analyzer).transpose()?;
        let scorer = match scorer {
            "auto" => Scorer::Auto,
            "tantivy" => Scorer::Tantivy,
            "maxscore" => Scorer::MaxScore,
            other => {
                return Err(to_py(Error::invalid(format!(
                    "scorer must be 'auto', 'maxscore' or 'tantivy', got {other:?}"
                ))))
            }
        };
        let options = Options {
            k1: k1 as f32,
            b: b as f32,
            scorer,
            writer_heap_bytes: positive("writer_heap_bytes", writer_heap_bytes)?,
            writer_threads: threads(writer_threads)?.min(8),
            pruning: Pruning::Auto,
            analyzer,
            language,
        };
        let inner = detached(py, || Bm25Index::open(path.as_deref(), options))?;
        Ok(PyBm25Index { inner })
    }

    /// Add documents; searchable after `commit()` (reads commit pending documents first).
    fn add(&self, py: Python<'_>, ids: Vec<String>, texts: Vec<String>) -> PyResult<()> {
        detached(py, || self.inner.add(&ids, &texts))
    }

    fn commit(&self, py: Python<'_>) -> PyResult<()> {
        detached(py, || self.inner.commit())
    }

    /// Commit, wait for merges and release the writer's folder lock.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        detached(py, || self.inner.close())
    }

    #[pyo3(signature = (queries, k, threads=None))]
    fn search_batch(
        &self,
        py: Python<'_>,
        queries: Vec<String>,
        k: i64,
        threads: Option<i64>,
    ) -> PyResult<Vec<Vec<(String, f32)>>> {
        let k = positive("k", k)?;
        let threads = self::threads(threads)?;
        detached(py, || self.inner.search_batch(&queries, k, threads))
    }

    #[pyo3(signature = (ids, threads=None))]
    fn get_texts(
        &self,
        py: Python<'_>,
        ids: Vec<String>,
        threads: Option<i64>,
    ) -> PyResult<Vec<Option<String>>> {
        let threads = self::threads(threads)?;
        detached(py, || self.inner.get_texts(&ids, threads))
    }

    /// Returns `(negatives, scores, ranks, positive_scores, positive_in_index, skipped)`:
    /// the first three one list per query, then one value per query, and the skipped
    /// candidates of the whole batch as `(same_id, near_duplicate, above_margin,
    /// outside_window)`.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    #[pyo3(signature = (queries, positive_ids, num_neg, start_rank=0, threads=None, depth=None, positive_texts=None, near_duplicate=None, end_rank=None, sampling="top", seed=0, max_score_ratio=None, min_score_gap=None))]
    fn mine(
        &self,
        py: Python<'_>,
        queries: Vec<String>,
        positive_ids: Vec<String>,
        num_neg: i64,
        start_rank: i64,
        threads: Option<i64>,
        depth: Option<i64>,
        positive_texts: Option<Vec<Option<String>>>,
        near_duplicate: Option<(i64, i64, f64)>,
        end_rank: Option<i64>,
        sampling: &str,
        seed: u64,
        max_score_ratio: Option<f64>,
        min_score_gap: Option<f64>,
    ) -> PyResult<MineOutput> {
        let num_neg = positive("num_neg", num_neg)?;
        if start_rank < 0 {
            return Err(to_py(Error::invalid(format!(
                "start_rank must be >= 0, got {start_rank}"
            ))));
        }
        let start_rank = start_rank as usize;
        let end_rank = match end_rank {
            None => None,
            Some(e) if e <= start_rank as i64 => {
                return Err(to_py(Error::invalid(format!(
                    "end_rank must be > start_rank (the window is candidate ranks \
                     start_rank to end_rank - 1), got start_rank={start_rank}, end_rank={e}"
                ))))
            }
            Some(e) => Some(e as usize),
        };
        let sampling = match sampling {
            "top" => Sampling::Top,
            "random" => Sampling::Random { seed },
            other => {
                return Err(to_py(Error::invalid(format!(
                    "sampling must be 'top' or 'random', got {other:?}"
                ))))
            }
        };
        let plan = Plan {
            num_neg,
            start_rank,
            end_rank,
            sampling,
            margin: Margin {
                max_score_ratio,
                min_score_gap,
            },
        };
        let depth = match depth {
            None | Some(0) => plan.default_depth(),
            Some(d) => Some(positive("depth", d)?),
        };
        let rule = match near_duplicate {
            None => None,
            Some((ngram, min_shared, min_fraction)) => Some(NearDupRule {
                ngram: positive("ngram", ngram)?,
                min_shared: positive("min_shared", min_shared)?,
                min_fraction,
            }),
        };
        let threads = self::threads(threads)?;
        let mined = detached(py, || {
            let req = MineRequest {
                queries: &queries,
                positive_ids: &positive_ids,
                plan,
                depth,
                positive_texts: positive_texts.as_deref(),
                rule,
            };
            self.inner.mine(&req, threads)
        })?;
        let mut out = MineOutput::default();
        let mut skipped = mining::Skipped::default();
        for m in mined {
            out.0.push(m.ids);
            out.1.push(m.scores);
            out.2.push(m.ranks);
            out.3.push(m.positive_score);
            out.4.push(m.positive_in_index);
            skipped += m.skipped;
        }
        out.5 = (
            skipped.same_id,
            skipped.near_duplicate,
            skipped.above_margin,
            skipped.outside_window,
        );
        Ok(out)
    }

    /// The score each text would get for its query as a document of this index.
    #[pyo3(signature = (queries, texts, threads=None))]
    fn score_texts(
        &self,
        py: Python<'_>,
        queries: Vec<String>,
        texts: Vec<String>,
        threads: Option<i64>,
    ) -> PyResult<Vec<f32>> {
        let threads = self::threads(threads)?;
        detached(py, || self.inner.score_texts(&queries, &texts, threads))
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        detached(py, || self.inner.len().map(|n| n as usize))
    }

    #[getter]
    fn path(&self) -> Option<PathBuf> {
        self.inner.path().map(PathBuf::from)
    }

    /// The analyzer of the index: "lucene", "rare", "cjk" or "jieba".
    #[getter]
    fn analyzer(&self) -> &'static str {
        self.inner.analyzer().name()
    }

    /// The language of the index's analyzer: "en" or "zh".
    #[getter]
    fn language(&self) -> &'static str {
        self.inner.analyzer().language()
    }

    /// The scorer that runs: "maxscore" (ours, any k1/b) or "tantivy" (k1=1.2, b=0.75).
    #[getter]
    fn scorer(&self) -> &'static str {
        self.inner.scorer().name()
    }
}

fn parse_analyzer(name: &str) -> PyResult<Analyzer> {
    Analyzer::from_name(name).ok_or_else(|| {
        to_py(Error::invalid(format!(
            "unknown analyzer {name:?}; known analyzers by language: {}",
            Analyzer::known()
        )))
    })
}

/// Index terms of `text` under an analyzer ("lucene" by default, "rare", "cjk" or "jieba").
#[pyfunction]
#[pyo3(signature = (text, analyzer="lucene"))]
fn analyze(py: Python<'_>, text: String, analyzer: &str) -> PyResult<Vec<String>> {
    let analyzer = parse_analyzer(analyzer)?;
    detached(py, || Ok(analyzer.analyze(&text)))
}

/// How many terms an analyzer makes of `texts`, analyzed in Rust on `threads` threads
/// without building a Python object per term: what timing an analyzer needs.
#[pyfunction]
#[pyo3(signature = (texts, analyzer="lucene", threads=None))]
fn count_terms(
    py: Python<'_>,
    texts: Vec<String>,
    analyzer: &str,
    threads: Option<i64>,
) -> PyResult<usize> {
    let analyzer = parse_analyzer(analyzer)?;
    let threads = self::threads(threads)?;
    detached(py, || index::count_terms(analyzer, &texts, threads))
}

/// The tokens of the near-duplicate rule: lowercased runs of letters and digits, each CJK
/// character a token of its own (as `rare.text.shingle_tokens`).
#[pyfunction]
fn shingle_tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    analysis::for_each_shingle_token(text, |t| out.push(t.to_string()));
    out
}

/// The share of CJK characters among the near-duplicate tokens of `texts` (each CJK
/// character one token, each other word one), as `rare.text.cjk_share`: what
/// `language="auto"` decides from.
#[pyfunction]
fn cjk_share(py: Python<'_>, texts: Vec<String>) -> PyResult<f64> {
    detached(py, || {
        let (mut cjk, mut all) = (0usize, 0usize);
        for text in &texts {
            analysis::for_each_shingle_token(text, |t| {
                all += 1;
                if t.chars().next().is_some_and(cjk::is_cjk) {
                    cjk += 1;
                }
            });
        }
        Ok(if all == 0 {
            0.0
        } else {
            cjk as f64 / all as f64
        })
    })
}

/// Lowercased runs of letters and digits, as `rare.text.tokenize`.
#[pyfunction]
fn tokenize(text: &str) -> Vec<String> {
    analysis::tokenize(text)
}

/// The near-duplicate rule of `rare.text.NearDuplicateRule`, in Rust.
#[pyfunction]
#[pyo3(signature = (a, b, ngram=8, min_shared=25, min_fraction=0.5))]
fn is_near_duplicate(
    py: Python<'_>,
    a: String,
    b: String,
    ngram: i64,
    min_shared: i64,
    min_fraction: f64,
) -> PyResult<bool> {
    let rule = NearDupRule {
        ngram: positive("ngram", ngram)?,
        min_shared: positive("min_shared", min_shared)?,
        min_fraction,
    };
    detached(py, || {
        rule.validate().map_err(Error::invalid)?;
        Ok(rule.is_near_duplicate(&a, &b))
    })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBm25Index>()?;
    m.add_function(wrap_pyfunction!(analyze, m)?)?;
    m.add_function(wrap_pyfunction!(tokenize, m)?)?;
    m.add_function(wrap_pyfunction!(count_terms, m)?)?;
    m.add_function(wrap_pyfunction!(shingle_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(cjk_share, m)?)?;
    m.add_function(wrap_pyfunction!(is_near_duplicate, m)?)?;
    m.add("Bm25Error", m.py().get_type::<Bm25Error>())?;
    m.add("FORMAT_VERSION", index::FORMAT_VERSION)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
