//! The BM25 index: build, open, search and mine, with no Python in sight.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

use rayon::prelude::*;
use rayon::ThreadPool;
use rustc_hash::FxHashSet;
use tantivy::collector::TopDocs;
use tantivy::index::SegmentId;
use tantivy::query::BooleanQuery;
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, FAST,
};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term,
};

use crate::analysis::{Analyzer, AnalyzerTokenizer};
use crate::error::{Error, ErrorKind, Result};
use crate::mining::{self, Plan, Skipped};
use crate::neardup::{NearDupRule, Vocabulary};
use crate::scoring::{self, Bm25, Hit};

/// tantivy's built-in BM25 constants; only these may use its block-WAND fast path.
pub const TANTIVY_K1: f32 = 1.2;
pub const TANTIVY_B: f32 = 0.75;

/// Written next to tantivy's files; bump `FORMAT_VERSION` whenever the schema or the
/// analyzer changes, so an old index is refused instead of silently mis-scored.
pub const MARKER_FILE: &str = "rare_bm25_rs.json";
pub const FORMAT_NAME: &str = "rare-bm25-rs";
pub const FORMAT_VERSION: u64 = 2;

/// Queries with more analyzed terms than this skip block-WAND (see `Pruning::Auto`).
pub const WAND_MAX_TERMS: usize = 5;

const ID: &str = "id";
const TEXT: &str = "text";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scorer {
    /// The fastest for the settings: ours ([`Scorer::MaxScore`]), measured faster than
    /// tantivy's at every query length tried (see the crate README).
    Auto,
    /// tantivy's own (block-WAND or exhaustive, see [`Pruning`]); only k1=1.2, b=0.75.
    Tantivy,
    /// Ours: Lucene's BM25 for any k1/b, exact top k by block-max MaxScore.
    MaxScore,
}

impl Scorer {
    pub fn name(self) -> &'static str {
        match self {
            Scorer::Auto => "auto",
            Scorer::Tantivy => "tantivy",
            Scorer::MaxScore => "maxscore",
        }
    }
}

/// How tantivy's scorer finds the top k.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pruning {
    /// Block-WAND for short queries, exhaustive scoring for long ones (measured faster).
    Auto,
    /// Always block-WAND (tantivy's `TopDocs`).
    BlockWand,
    /// Always score every matching document.
    Exhaustive,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub k1: f32,
    pub b: f32,
    pub scorer: Scorer,
    /// Indexing memory for all writer threads together.
    pub writer_heap_bytes: usize,
    pub writer_threads: usize,
    pub pruning: Pruning,
    /// None: the analyzer a folder's index was built with, else the default of `language`.
    pub analyzer: Option<Analyzer>,
    /// "en" or "zh"; None: the language a folder's index was built for, else "en" (or the
    /// analyzer's). A folder built for another language is refused.
    pub language: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            k1: TANTIVY_K1,
            b: TANTIVY_B,
            scorer: Scorer::Auto,
            writer_heap_bytes: 256_000_000,
            writer_threads: 2,
            pruning: Pruning::Auto,
            analyzer: None,
            language: None,
        }
    }
}

fn schema(analyzer: Analyzer) -> Schema {
    let mut builder = Schema::builder();
    // Ids live in a fast (columnar) field only: read per segment into memory and looked up
    // through [`Snapshot::address_of`], they need neither an inverted index nor the store.
    builder.add_text_field(ID, FAST);
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(analyzer.tokenizer_name())
        .set_index_option(IndexRecordOption::WithFreqs);
    builder.add_text_field(
        TEXT,
        TextOptions::default()
            .set_indexing_options(indexing)
            .set_stored(),
    );
    builder.build()
}

/// Stored texts are compressed in blocks of this many bytes: mining reads a few texts per
/// query at random (the positive and the candidates the near-duplicate rule checks), and
/// each read decompresses a whole block, so blocks are smaller than tantivy's 16 KiB.
const DOCSTORE_BLOCK_BYTES: usize = 4096;

fn index_builder(analyzer: Analyzer) -> tantivy::IndexBuilder {
    Index::builder()
        .schema(schema(analyzer))
        .settings(tantivy::IndexSettings {
            docstore_blocksize: DOCSTORE_BLOCK_BYTES,
            ..Default::default()
        })
}

fn marker_json(analyzer: Analyzer) -> String {
    format!(
        "{{\"format\": \"{FORMAT_NAME}\", \"version\": {FORMAT_VERSION}, \"analyzer\": \"{}\", \
         \"language\": \"{}\"}}\n",
        analyzer.tokenizer_name(),
        analyzer.language()
    )
}

/// The analyzer of a new index, from the options; an unknown language or an analyzer of
/// another language is an `invalid_argument` error naming the known ones.
fn wanted_analyzer(options: &Options) -> Result<Option<Analyzer>> {
    let Some(language) = options.language.as_deref() else {
        return Ok(options.analyzer);
    };
    let Some(default) = Analyzer::default_for(language) else {
        return Err(Error::invalid(format!(
            "unknown language {language:?}; known languages (and their analyzers): {}",
            Analyzer::known()
        )));
    };
    match options.analyzer {
        Some(a) if a.language() != language => Err(Error::invalid(format!(
            "analyzer '{}' is for language '{}', not '{language}'; analyzers of '{language}': \
             {}",
            a.name(),
            a.language(),
            Analyzer::known()
        ))),
        Some(a) => Ok(Some(a)),
        None => Ok(Some(default)),
    }
}

/// Id strings of one segment, by doc id: read once per segment from the `id` fast field.
type SegmentIds = Arc<Vec<Box<str>>>;

/// One consistent view of the index: a searcher and the ids of its segments.
struct Snapshot {
    searcher: Searcher,
    ids: Vec<SegmentIds>,
    /// Every live document as (hash of its id, address), sorted; built on first lookup.
    by_id: OnceLock<Vec<(u64, DocAddress)>>,
    /// Our scorer over this searcher (its statistics and term bounds are per snapshot).
    bm25: Bm25,
}

impl Snapshot {
    fn id(&self, addr: DocAddress) -> &str {
        self.ids
            .get(addr.segment_ord as usize)
            .and_then(|seg| seg.get(addr.doc_id as usize))
            .map_or("", |s| s)
    }

    /// The address of the live document with this id.
    fn address_of(&self, id: &str) -> Option<DocAddress> {
        let by_id = self.by_id.get_or_init(|| {
            let mut all = Vec::with_capacity(self.searcher.num_docs() as usize);
            for (ord, seg) in self.searcher.segment_readers().iter().enumerate() {
                let Some(ids) = self.ids.get(ord) else {
                    continue;
                };
                for (doc, doc_id) in ids.iter().enumerate() {
                    if !seg.is_deleted(doc as u32) {
                        all.push((hash_id(doc_id), DocAddress::new(ord as u32, doc as u32)));
                    }
                }
            }
            all.sort_unstable();
            all
        });
        let key = hash_id(id);
        let first = by_id.partition_point(|(h, _)| *h < key);
        by_id[first..]
            .iter()
            .take_while(|(h, _)| *h == key)
            .map(|(_, addr)| *addr)
            .find(|addr| self.id(*addr) == id)
    }
}

fn hash_id(id: &str) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(id)
}

pub struct Bm25Index {
    index: Index,
    path: Option<PathBuf>,
    id_field: Field,
    text_field: Field,
    options: Options,
    analyzer: Analyzer,
    tantivy_scorer: bool,
    writer: Mutex<Option<IndexWriter>>,
    pending: AtomicBool,
    reader: IndexReader,
    snapshot: RwLock<Arc<Snapshot>>,
    id_cache: Mutex<HashMap<SegmentId, SegmentIds>>,
    /// Every id indexed so far, committed or not: a duplicate id is refused.
    known_ids: Mutex<FxHashSet<Box<str>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn bad_path(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::BadPath,
        format!("cannot use {} as an index folder: {why}", path.display()),
    )
}

/// Open the index in `path`, built by us with `wanted` (or any analyzer when None) for
/// `language` (or any language when None).
fn open_index(
    path: &Path,
    wanted: Option<Analyzer>,
    language: Option<&str>,
) -> Result<(Index, Analyzer)> {
    let incompatible = |why: String| {
        Error::new(
            ErrorKind::Incompatible,
            format!(
                "{} holds an index that rare_bm25_rs (format {FORMAT_VERSION}) cannot use: {why}; \
                 rebuild it into an empty folder",
                path.display()
            ),
        )
    };
    let marker = path.join(MARKER_FILE);
    let text = fs::read_to_string(&marker).map_err(|_| {
        incompatible(format!(
            "{MARKER_FILE} is missing (not built by rare_bm25_rs)"
        ))
    })?;
    let meta: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| incompatible(format!("{MARKER_FILE} is not valid JSON ({e})")))?;
    let stored = meta["analyzer"]
        .as_str()
        .and_then(Analyzer::from_tokenizer_name);
    let analyzer = match stored {
        Some(a) if meta["format"] == FORMAT_NAME && meta["version"] == FORMAT_VERSION => a,
        _ => {
            return Err(incompatible(format!(
                "{MARKER_FILE} says {}, expected format {FORMAT_NAME} version {FORMAT_VERSION} \
                 with a known analyzer",
                text.trim()
            )))
        }
    };
    if let Some(language) = language.filter(|l| *l != analyzer.language()) {
        return Err(incompatible(format!(
            "it was built for language '{}' (analyzer '{}'), not '{language}'; open it with \
             language='{}' (or 'auto', which takes the saved one)",
            analyzer.language(),
            analyzer.name(),
            analyzer.language()
        )));
    }
    if let Some(wanted) = wanted.filter(|w| *w != analyzer) {
        return Err(incompatible(format!(
            "it was built with analyzer '{}', not '{}' (leave the analyzer unset to use it as \
             built)",
            analyzer.name(),
            wanted.name()
        )));
    }
    let index = Index::open_in_dir(path).map_err(|e| match Error::from(e) {
        err if err.kind == ErrorKind::Incompatible => incompatible(err.message),
        err => bad_path(path, err.message),
    })?;
    if index.schema() != schema(analyzer) {
        return Err(incompatible("its schema differs from ours".into()));
    }
    Ok((index, analyzer))
}

fn create_index(path: &Path, analyzer: Analyzer) -> Result<Index> {
    fs::create_dir_all(path).map_err(|e| bad_path(path, e))?;
    let mut entries = fs::read_dir(path).map_err(|e| bad_path(path, e))?;
    if let Some(entry) = entries.next() {
        let name = entry.map_err(|e| bad_path(path, e))?.file_name();
        if name != MARKER_FILE {
            return Err(bad_path(
                path,
                format!(
                    "the folder is not empty ({}) and holds no index",
                    name.to_string_lossy()
                ),
            ));
        }
    }
    // The marker goes first: a folder with tantivy files but no marker is never ours.
    fs::write(path.join(MARKER_FILE), marker_json(analyzer)).map_err(|e| bad_path(path, e))?;
    index_builder(analyzer)
        .create_in_dir(path)
        .map_err(|e| bad_path(path, Error::from(e)))
}

fn thread_pool(threads: usize) -> Result<Arc<ThreadPool>> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<ThreadPool>>>> = OnceLock::new();
    let mut pools = lock(POOLS.get_or_init(Default::default));
    if let Some(pool) = pools.get(&threads) {
        return Ok(pool.clone());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("rare-bm25-{i}"))
        .build()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot start threads: {e}")))?;
    let pool = Arc::new(pool);
    pools.insert(threads, pool.clone());
    Ok(pool)
}

/// All cores this process may use.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How many terms `analyzer` makes of `texts`, on `threads` threads (each with its own
/// tokenizer, as the index writer's threads have).
pub fn count_terms(analyzer: Analyzer, texts: &[String], threads: usize) -> Result<usize> {
    use tantivy::tokenizer::{TokenStream, Tokenizer};
    let pool = thread_pool(threads.max(1))?;
    Ok(pool.install(|| {
        texts
            .par_chunks(64)
            .map_init(
                || AnalyzerTokenizer::new(analyzer),
                |tokenizer, chunk| {
                    let mut n = 0;
                    for text in chunk {
                        let mut stream = tokenizer.token_stream(text);
                        while stream.advance() {
                            n += 1;
                        }
                    }
                    n
                },
            )
            .sum()
    }))
}

/// What one query of a mining batch got.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mined {
    pub ids: Vec<String>,
    pub scores: Vec<f32>,
    /// Each negative's candidate rank (0: the best hit that is neither the positive, nor
    /// above the margin, nor a near-duplicate of the positive).
    pub ranks: Vec<usize>,
    /// The positive's score for the query in this index (None: neither its id nor its
    /// text is known).
    pub positive_score: Option<f32>,
    /// Whether the positive's id is in the index (else its score is its text's).
    pub positive_in_index: bool,
    pub skipped: Skipped,
}

pub struct MineRequest<'a> {
    pub queries: &'a [String],
    pub positive_ids: &'a [String],
    pub plan: Plan,
    /// The most hits walked per query; None: as many as the walk needs (every match).
    pub depth: Option<usize>,
    pub positive_texts: Option<&'a [Option<String>]>,
    pub rule: Option<NearDupRule>,
}

impl Bm25Index {
    /// Open the index in `path` if it holds one, else create one there (or in RAM).
    pub fn open(path: Option<&Path>, options: Options) -> Result<Self> {
        if !(options.k1 >= 0.0 && options.k1.is_finite() && (0.0..=1.0).contains(&options.b)) {
            return Err(Error::invalid(format!(
                "BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={}, b={}",
                options.k1, options.b
            )));
        }
        let defaults = options.k1 == TANTIVY_K1 && options.b == TANTIVY_B;
        let tantivy_scorer = match options.scorer {
            Scorer::Auto | Scorer::MaxScore => false,
            Scorer::Tantivy if defaults => true,
            Scorer::Tantivy => {
                return Err(Error::invalid(format!(
                    "scorer 'tantivy' only supports k1={TANTIVY_K1}, b={TANTIVY_B}; \
                     got k1={}, b={} (use 'auto' or 'maxscore')",
                    options.k1, options.b
                )))
            }
        };
        if options.writer_threads == 0 {
            return Err(Error::invalid("writer_threads must be >= 1"));
        }
        let wanted = wanted_analyzer(&options)?;
        let fresh = wanted.unwrap_or(Analyzer::Lucene);
        let (index, analyzer) = match path {
            None => (index_builder(fresh).create_in_ram()?, fresh),
            Some(p) if p.exists() && !p.is_dir() => {
                return Err(bad_path(p, "it exists and is not a folder"))
            }
            Some(p) if p.join("meta.json").exists() => {
                open_index(p, options.analyzer, options.language.as_deref())?
            }
            Some(p) => (create_index(p, fresh)?, fresh),
        };
        index.tokenizers().register(
            analyzer.tokenizer_name(),
            TextAnalyzer::from(AnalyzerTokenizer::new(analyzer)),
        );
        let schema = index.schema();
        let id_field = schema.get_field(ID)?;
        let text_field = schema.get_field(TEXT)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let searcher = reader.searcher();
        let bm25 = Bm25::new(&searcher, text_field, options.k1, options.b)?;
        let this = Bm25Index {
            index,
            path: path.map(Path::to_path_buf),
            id_field,
            text_field,
            options,
            analyzer,
            tantivy_scorer,
            writer: Mutex::new(None),
            pending: AtomicBool::new(false),
            reader,
            snapshot: RwLock::new(Arc::new(Snapshot {
                searcher,
                ids: Vec::new(),
                by_id: OnceLock::new(),
                bm25,
            })),
            id_cache: Mutex::new(HashMap::new()),
            known_ids: Mutex::new(FxHashSet::default()),
        };
        this.refresh()?;
        {
            let snap = this.snapshot()?;
            let mut known = lock(&this.known_ids);
            for seg in &snap.ids {
                known.extend(seg.iter().cloned());
            }
        }
        Ok(this)
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn analyzer(&self) -> Analyzer {
        self.analyzer
    }

    /// The scorer that runs: "maxscore" (ours) or "tantivy".
    pub fn scorer(&self) -> Scorer {
        if self.tantivy_scorer {
            Scorer::Tantivy
        } else {
            Scorer::MaxScore
        }
    }

    /// Add documents (not searchable before [`Bm25Index::commit`]).
    pub fn add(&self, ids: &[String], texts: &[String]) -> Result<()> {
        if ids.len() != texts.len() {
            return Err(Error::invalid(format!(
                "index() got {} ids but {} texts",
                ids.len(),
                texts.len()
            )));
        }
        let mut guard = lock(&self.writer);
        let mut known = lock(&self.known_ids);
        let mut batch: FxHashSet<&str> = FxHashSet::default();
        for id in ids {
            if known.contains(id.as_str()) || !batch.insert(id.as_str()) {
                return Err(Error::invalid(format!(
                    "duplicate document id '{id}': ids must be unique across the index"
                )));
            }
        }
        if guard.is_none() {
            let threads = self.options.writer_threads.clamp(1, 8);
            let heap = self.options.writer_heap_bytes.max(threads * 15_000_000);
            *guard = Some(self.index.writer_with_num_threads(threads, heap)?);
        }
        let Some(writer) = guard.as_ref() else {
            return Err(Error::new(ErrorKind::Internal, "index writer missing"));
        };
        for (id, text) in ids.iter().zip(texts) {
            let mut doc = TantivyDocument::default();
            doc.add_text(self.id_field, id);
            doc.add_text(self.text_field, text);
            writer.add_document(doc)?;
            known.insert(id.as_str().into());
            self.pending.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Make everything added so far searchable (and durable, for an on-disk index).
    pub fn commit(&self) -> Result<()> {
        {
            let mut guard = lock(&self.writer);
            if let Some(writer) = guard.as_mut() {
                if self.pending.swap(false, Ordering::AcqRel) {
                    writer.commit()?;
                }
            }
        }
        self.refresh()
    }

    /// Commit what is pending, then release the writer (and its folder lock) once its
    /// merges are done. Later `add` calls open a new writer.
    pub fn close(&self) -> Result<()> {
        self.commit()?;
        let writer = lock(&self.writer).take();
        if let Some(writer) = writer {
            writer.wait_merging_threads()?;
        }
        self.refresh()
    }

    /// Commit first if documents are waiting, so reads always see every added document.
    fn ensure_committed(&self) -> Result<()> {
        if self.pending.load(Ordering::Acquire) {
            self.commit()?;
        }
        Ok(())
    }

    fn refresh(&self) -> Result<()> {
        self.reader.reload()?;
        let searcher = self.reader.searcher();
        let mut cache = lock(&self.id_cache);
        let mut ids = Vec::with_capacity(searcher.segment_readers().len());
        for seg in searcher.segment_readers() {
            let seg_id = seg.segment_id();
            let seg_ids = match cache.get(&seg_id) {
                Some(found) => found.clone(),
                None => {
                    let loaded = Arc::new(read_segment_ids(seg)?);
                    cache.insert(seg_id, loaded.clone());
                    loaded
                }
            };
            ids.push(seg_ids);
        }
        let live: FxHashSet<SegmentId> = searcher
            .segment_readers()
            .iter()
            .map(|s| s.segment_id())
            .collect();
        cache.retain(|k, _| live.contains(k));
        let bm25 = Bm25::new(&searcher, self.text_field, self.options.k1, self.options.b)?;
        let snapshot = Arc::new(Snapshot {
            searcher,
            ids,
            by_id: OnceLock::new(),
            bm25,
        });
        *self
            .snapshot
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = snapshot;
        Ok(())
    }

    fn snapshot(&self) -> Result<Arc<Snapshot>> {
        self.ensure_committed()?;
        Ok(self
            .snapshot
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone())
    }

    pub fn len(&self) -> Result<u64> {
        Ok(self.snapshot()?.searcher.num_docs())
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    fn search_one(&self, snap: &Snapshot, query: &str, k: usize) -> Result<Vec<Hit>> {
        let terms = self.analyzer.analyze(query);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let k = k.min(snap.searcher.num_docs().max(1) as usize);
        if !self.tantivy_scorer {
            return snap.bm25.search(&snap.searcher, &terms, k);
        }
        let terms: Vec<Term> = terms
            .iter()
            .map(|t| Term::from_field_text(self.text_field, t))
            .collect();
        let wand = match self.options.pruning {
            Pruning::BlockWand => true,
            Pruning::Exhaustive => false,
            Pruning::Auto => terms.len() <= WAND_MAX_TERMS,
        };
        let query = BooleanQuery::new_multiterms_query(terms);
        let mut hits = if wand {
            snap.searcher
                .search(&query, &TopDocs::with_limit(k).order_by_score())?
                .into_iter()
                .map(|(score, addr)| Hit { score, addr })
                .collect()
        } else {
            snap.searcher
                .search(&query, &scoring::ExhaustiveTopK { k })?
        };
        // tantivy multiplies every score by (k1 + 1); Lucene >= 8 does not.
        for hit in &mut hits {
            hit.score /= 1.0 + TANTIVY_K1;
        }
        Ok(hits)
    }

    /// Top `k` `(id, score)` for every query, computed on `threads` threads.
    pub fn search_batch(
        &self,
        queries: &[String],
        k: usize,
        threads: usize,
    ) -> Result<Vec<Vec<(String, f32)>>> {
        if k == 0 {
            return Err(Error::invalid("k must be >= 1, got 0"));
        }
        let snap = self.snapshot()?;
        let pool = thread_pool(threads.max(1))?;
        pool.install(|| {
            queries
                .par_iter()
                .map(|q| {
                    let hits = self.search_one(&snap, q, k)?;
                    Ok(hits
                        .iter()
                        .map(|h| (snap.id(h.addr).to_string(), h.score))
                        .collect())
                })
                .collect()
        })
    }

    fn text_at(&self, snap: &Snapshot, addr: DocAddress) -> Result<String> {
        let doc: TantivyDocument = snap.searcher.doc(addr)?;
        Ok(doc
            .get_first(self.text_field)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string())
    }

    fn text_of(&self, snap: &Snapshot, id: &str) -> Result<Option<String>> {
        match snap.address_of(id) {
            Some(addr) => Ok(Some(self.text_at(snap, addr)?)),
            None => Ok(None),
        }
    }

    /// The stored text of each id (None for an unknown id).
    pub fn get_texts(&self, ids: &[String], threads: usize) -> Result<Vec<Option<String>>> {
        let snap = self.snapshot()?;
        let pool = thread_pool(threads.max(1))?;
        pool.install(|| ids.par_iter().map(|id| self.text_of(&snap, id)).collect())
    }

    /// Hard negatives for every query, with the semantics of `rare.Retriever.mine`.
    pub fn mine(&self, req: &MineRequest<'_>, threads: usize) -> Result<Vec<Mined>> {
        let n = req.queries.len();
        if req.positive_ids.len() != n {
            return Err(Error::invalid(format!(
                "mine() got {n} queries but {} positive ids",
                req.positive_ids.len()
            )));
        }
        if let Some(texts) = req.positive_texts {
            if texts.len() != n {
                return Err(Error::invalid(format!(
                    "mine() got {n} queries but {} positive texts",
                    texts.len()
                )));
            }
        }
        req.plan.validate().map_err(Error::invalid)?;
        if req.depth == Some(0) {
            return Err(Error::invalid("depth must be >= 1, got 0"));
        }
        if let Some(rule) = &req.rule {
            rule.validate().map_err(Error::invalid)?;
        }
        let snap = self.snapshot()?;
        let pool = thread_pool(threads.max(1))?;
        pool.install(|| {
            (0..n)
                .into_par_iter()
                .map(|qi| self.mine_one(&snap, req, qi))
                .collect()
        })
    }

    fn mine_one(&self, snap: &Snapshot, req: &MineRequest<'_>, qi: usize) -> Result<Mined> {
        let plan = &req.plan;
        let query = req.queries[qi].as_str();
        let positive = req.positive_ids[qi].as_str();
        let given_text = req
            .positive_texts
            .and_then(|texts| texts[qi].as_deref())
            .filter(|t| !t.is_empty());
        let pos_addr = snap.address_of(positive);
        let pos_text = match (&req.rule, pos_addr) {
            (None, _) => None,
            (Some(_), _) if given_text.is_some() => given_text.map(str::to_string),
            (Some(_), Some(addr)) => Some(self.text_at(snap, addr)?),
            (Some(_), None) => None,
        };
        // `pos_text` is only ever set when there is a rule; an empty one matches nothing.
        let mut vocabulary = Vocabulary::default();
        let pos_ids = pos_text
            .filter(|text| !text.is_empty())
            .map(|text| vocabulary.token_ids(&text));
        let pos_shingles = req
            .rule
            .as_ref()
            .zip(pos_ids.as_deref())
            .map(|(rule, ids)| (rule, rule.shingles(ids)));
        // Our scorer's top m is exactly the head of its top k, so a short search usually
        // settles the query: room for the positive and a few near-duplicates of it. A
        // query that runs out searches again, four times deeper each time, up to `depth`.
        let num_docs = snap.searcher.num_docs().max(1) as usize;
        let cap = req.depth.unwrap_or(num_docs);
        let mut k = if self.tantivy_scorer {
            cap
        } else {
            plan.first_k(cap)
        };
        let mut positive_score = None;
        loop {
            let hits = self.search_one(snap, query, k)?;
            let exhausted = hits.len() < k || k >= cap;
            if positive_score.is_none() {
                positive_score = match hits.iter().find(|h| snap.id(h.addr) == positive) {
                    Some(hit) => Some(hit.score),
                    None => self.positive_score(snap, query, pos_addr, given_text)?,
                };
            }
            let bound = plan.margin.bound(positive_score);
            let scores: Vec<f32> = hits.iter().map(|h| h.score).collect();
            let mut near_duplicate = |i: usize| -> Result<bool> {
                let Some((rule, shingles)) = &pos_shingles else {
                    return Ok(false);
                };
                let candidate = vocabulary.token_ids(&self.text_at(snap, hits[i].addr)?);
                Ok(rule.same(shingles, &rule.shingles(&candidate)))
            };
            let walked = mining::walk(
                plan,
                bound,
                &scores,
                |i| snap.id(hits[i].addr) == positive,
                &mut near_duplicate,
            )?;
            if walked.settled || exhausted {
                let (kept, skipped) =
                    mining::finish(plan, walked, query, positive, &mut near_duplicate)?;
                return Ok(Mined {
                    ids: kept
                        .iter()
                        .map(|&(i, _)| snap.id(hits[i].addr).to_string())
                        .collect(),
                    scores: kept.iter().map(|&(i, _)| hits[i].score).collect(),
                    ranks: kept.iter().map(|&(_, r)| r).collect(),
                    positive_score,
                    positive_in_index: pos_addr.is_some(),
                    skipped,
                });
            }
            k = k.saturating_mul(4).min(cap);
        }
    }

    /// The positive's score when it is not among the hits: from the index when its id is
    /// there, else from its text against the index's statistics.
    fn positive_score(
        &self,
        snap: &Snapshot,
        query: &str,
        addr: Option<DocAddress>,
        text: Option<&str>,
    ) -> Result<Option<f32>> {
        let terms = self.analyzer.analyze(query);
        if let Some(addr) = addr {
            return Ok(Some(snap.bm25.score_doc(&snap.searcher, &terms, addr)?));
        }
        match text {
            Some(text) => Ok(Some(snap.bm25.score_text(
                &snap.searcher,
                &terms,
                &self.analyzer.analyze(text),
            )?)),
            None => Ok(None),
        }
    }

    /// The score each text would get for its query as a document of this index (see
    /// [`Bm25::score_text`]).
    pub fn score_texts(
        &self,
        queries: &[String],
        texts: &[String],
        threads: usize,
    ) -> Result<Vec<f32>> {
        if queries.len() != texts.len() {
            return Err(Error::invalid(format!(
                "score_texts() got {} queries but {} texts",
                queries.len(),
                texts.len()
            )));
        }
        let snap = self.snapshot()?;
        let pool = thread_pool(threads.max(1))?;
        pool.install(|| {
            queries
                .par_iter()
                .zip(texts)
                .map(|(q, t)| {
                    snap.bm25.score_text(
                        &snap.searcher,
                        &self.analyzer.analyze(q),
                        &self.analyzer.analyze(t),
                    )
                })
                .collect()
        })
    }
}

/// The id of every document of a segment, by doc id, from the `id` fast field.
fn read_segment_ids(seg: &tantivy::SegmentReader) -> Result<Vec<Box<str>>> {
    let max_doc = seg.max_doc() as usize;
    let Some(column) = seg.fast_fields().str(ID)? else {
        return Ok(vec![Box::from(""); max_doc]);
    };
    // Stream the sorted dictionary once instead of one lookup per document.
    let mut by_ord: Vec<Box<str>> = Vec::with_capacity(column.num_terms());
    let mut stream = column.dictionary().stream()?;
    while stream.advance() {
        by_ord.push(String::from_utf8_lossy(stream.key()).into());
    }
    let ords = column.ords();
    Ok((0..max_doc as u32)
        .map(|doc| {
            ords.first(doc)
                .and_then(|ord| by_ord.get(ord as usize))
                .cloned()
                .unwrap_or_default()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mining::{Margin, Sampling};

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn corpus(options: Options) -> Bm25Index {
        let index = Bm25Index::open(None, options).unwrap();
        let ids = strings(&["a", "b", "c", "d", "e"]);
        let texts = strings(&[
            "cats purr loudly and cats sleep",
            "dogs bark at cats in the garden",
            "fish swim in the garden pond",
            "the garden has cats, dogs and fish and a long long long long tail of words",
            "",
        ]);
        index.add(&ids, &texts).unwrap();
        index.commit().unwrap();
        index
    }

    #[test]
    fn maxscore_agrees_with_tantivy_at_defaults() {
        let fast = corpus(Options {
            scorer: Scorer::Tantivy,
            ..Options::default()
        });
        let slow = corpus(Options::default());
        assert_eq!(
            (fast.scorer(), slow.scorer()),
            (Scorer::Tantivy, Scorer::MaxScore)
        );
        let queries = strings(&["cats garden", "fish fish pond", "the", "dogs"]);
        let a = fast.search_batch(&queries, 10, 2).unwrap();
        let b = slow.search_batch(&queries, 10, 1).unwrap();
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.len(), y.len());
            for ((id_x, s_x), (id_y, s_y)) in x.iter().zip(y) {
                assert_eq!(id_x, id_y);
                assert!(
                    (s_x - s_y).abs() <= 1e-5 * s_x.abs().max(1.0),
                    "{s_x} vs {s_y}"
                );
            }
        }
        assert!(a[2].is_empty(), "a stop-word-only query matches nothing");
    }

    /// Pseudo-random words with a skewed (Zipf-like) frequency, so that some terms are
    /// common enough to get window bounds and become non-essential.
    fn random_corpus(docs: usize, seed: u64) -> Vec<String> {
        let mut state = seed;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        (0..docs)
            .map(|_| {
                let len = 3 + next() % 60;
                (0..len)
                    .map(|_| {
                        let r = next() % 1000 + 1;
                        format!("w{}", 1000 / r)
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    /// Every matching document scored with no pruning at all, best first.
    fn brute_force(index: &Bm25Index, query: &str) -> Vec<(String, f32)> {
        let snap = index.snapshot().unwrap();
        let terms = index.analyzer.analyze(query);
        let hits = scoring::tests::exhaustive(&snap.bm25, &snap.searcher, &terms);
        hits.iter()
            .map(|h| (snap.id(h.addr).to_string(), h.score))
            .collect()
    }

    #[test]
    fn maxscore_is_exact_and_its_top_m_heads_its_top_k() {
        let texts = random_corpus(30_000, 7);
        let index = Bm25Index::open(None, Options::default()).unwrap();
        // Three segments, so pruning carries its threshold from one segment to the next.
        for part in 0..3 {
            let range = part * 10_000..(part + 1) * 10_000;
            let ids: Vec<String> = range.clone().map(|i| format!("d{i}")).collect();
            index.add(&ids, &texts[range]).unwrap();
            index.commit().unwrap();
        }
        let queries: Vec<String> = random_corpus(40, 99)
            .into_iter()
            .chain(["w1 w2 w3 w1000".to_string(), "w500 w1".to_string()])
            .collect();
        for query in &queries {
            let expected = brute_force(&index, query);
            let mut previous: Vec<(String, f32)> = Vec::new();
            for k in [1, 3, 10, 100, 1000] {
                let got = index
                    .search_batch(std::slice::from_ref(query), k, 1)
                    .unwrap();
                let got = &got[0];
                assert_eq!(got.len(), k.min(expected.len()), "{query}");
                assert_eq!(got[..], expected[..got.len()], "query {query:?}, k={k}");
                assert_eq!(got[..previous.len()], previous[..], "k={k} is not a prefix");
                previous = got.clone();
            }
        }
    }

    #[test]
    fn mining_skips_positive_and_reports_what_it_found() {
        let index = corpus(Options::default());
        let plan = Plan {
            num_neg: 3,
            start_rank: 0,
            end_rank: None,
            sampling: Sampling::Top,
            margin: Margin::default(),
        };
        let req = MineRequest {
            queries: &strings(&["cats"]),
            positive_ids: &strings(&["a"]),
            plan,
            depth: Some(50),
            positive_texts: None,
            rule: Some(NearDupRule::default()),
        };
        let mined = index.mine(&req, 1).unwrap();
        assert_eq!(mined[0].ids.len(), 2);
        assert!(!mined[0].ids.contains(&"a".to_string()));
        assert_eq!(mined[0].ranks, vec![0, 1]);
        assert_eq!(mined[0].skipped.same_id, 1);
        assert!(mined[0].positive_in_index);
        let skipped = index
            .mine(
                &MineRequest {
                    plan: Plan {
                        start_rank: 1,
                        ..plan
                    },
                    ..req
                },
                1,
            )
            .unwrap();
        assert_eq!(skipped[0].ids, mined[0].ids[1..].to_vec());
        assert_eq!(skipped[0].skipped.outside_window, 1);
    }

    #[test]
    fn positive_scores_match_search_and_text() {
        let index = corpus(Options::default());
        let queries = strings(&["garden cats", "fish pond"]);
        let hits = index.search_batch(&queries, 10, 1).unwrap();
        let snap = index.snapshot().unwrap();
        for (q, query_hits) in queries.iter().zip(&hits) {
            let terms = index.analyzer.analyze(q);
            for (id, score) in query_hits {
                let addr = snap.address_of(id).unwrap();
                let exact = snap.bm25.score_doc(&snap.searcher, &terms, addr).unwrap();
                assert_eq!(exact, *score, "{q} {id}");
                let text = index.text_at(&snap, addr).unwrap();
                let from_text = index
                    .score_texts(std::slice::from_ref(q), &[text], 1)
                    .unwrap()[0];
                assert!(
                    (from_text - score).abs() <= 1e-6 * score.max(1.0),
                    "{q} {id}"
                );
            }
        }
        // A positive the index does not hold is scored from its text, and said to be so.
        let plan = Plan {
            num_neg: 2,
            start_rank: 0,
            end_rank: None,
            sampling: Sampling::Top,
            margin: Margin {
                max_score_ratio: Some(0.99),
                min_score_gap: None,
            },
        };
        let texts = [Some("cats in the garden, cats everywhere".to_string())];
        let mined = index
            .mine(
                &MineRequest {
                    queries: &strings(&["garden cats"]),
                    positive_ids: &strings(&["external"]),
                    plan,
                    depth: Some(50),
                    positive_texts: Some(&texts),
                    rule: None,
                },
                1,
            )
            .unwrap();
        let m = &mined[0];
        assert!(!m.positive_in_index);
        let expected = index
            .score_texts(&strings(&["garden cats"]), &[texts[0].clone().unwrap()], 1)
            .unwrap()[0];
        assert_eq!(m.positive_score, Some(expected));
        let bound = 0.99 * expected;
        assert!(m.scores.iter().all(|s| *s <= bound));
        // A bound below every score skips every candidate (four documents match).
        let none = index
            .mine(
                &MineRequest {
                    queries: &strings(&["garden cats"]),
                    positive_ids: &strings(&["external"]),
                    plan: Plan {
                        margin: Margin {
                            max_score_ratio: Some(0.01),
                            min_score_gap: None,
                        },
                        ..plan
                    },
                    depth: Some(50),
                    positive_texts: Some(&texts),
                    rule: None,
                },
                1,
            )
            .unwrap();
        assert!(none[0].ids.is_empty());
        assert_eq!(none[0].skipped.above_margin, 4);
    }

    #[test]
    fn errors_have_kinds() {
        let index = corpus(Options::default());
        let err = index.search_batch(&strings(&["x"]), 0, 1).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidArgument);
        let err = index.add(&strings(&["z"]), &[]).unwrap_err();
        assert!(err.message.contains("1 ids but 0 texts"));
        let err = index
            .add(&strings(&["a"]), &strings(&["again"]))
            .unwrap_err();
        assert!(err.message.contains("duplicate document id 'a'"));
        let err = Bm25Index::open(
            None,
            Options {
                k1: 0.9,
                scorer: Scorer::Tantivy,
                ..Options::default()
            },
        )
        .err()
        .unwrap();
        assert_eq!(err.kind, ErrorKind::InvalidArgument);
    }

    #[test]
    fn reopen_from_folder() {
        let dir = std::env::temp_dir().join(format!("rare_bm25_rs_test_{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        {
            let index = Bm25Index::open(Some(&dir), Options::default()).unwrap();
            index
                .add(
                    &strings(&["x", "y"]),
                    &strings(&["red apples", "green pears"]),
                )
                .unwrap();
            index.close().unwrap();
        }
        let again = Bm25Index::open(Some(&dir), Options::default()).unwrap();
        assert_eq!(again.len().unwrap(), 2);
        let hits = again.search_batch(&strings(&["apple"]), 5, 1).unwrap();
        assert_eq!(hits[0][0].0, "x");
        assert_eq!(
            again.get_texts(&strings(&["y", "nope"]), 1).unwrap(),
            vec![Some("green pears".to_string()), None]
        );
        drop(again);
        fs::write(dir.join(MARKER_FILE), "{\"format\": \"other\"}").unwrap();
        let err = Bm25Index::open(Some(&dir), Options::default())
            .err()
            .unwrap();
        assert_eq!(err.kind, ErrorKind::Incompatible);
        let file = dir.join("meta.json");
        let err = Bm25Index::open(Some(&file), Options::default())
            .err()
            .unwrap();
        assert_eq!(err.kind, ErrorKind::BadPath);
        let _ = fs::remove_dir_all(&dir);
    }
}
