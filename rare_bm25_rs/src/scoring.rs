//! Lucene's BM25 for any k1 and b, over tantivy's postings and fieldnorms.
//!
//! tantivy hard-codes k1=1.2, b=0.75; [`Bm25`] scores any k1/b, with exact top-k pruning
//! (block-max MaxScore), and is the default scorer for every setting since it measured
//! faster than tantivy's own. Statistics are tantivy's (N = documents in all segments,
//! avgdl = tokens / N, idf = ln(1 + (N - df + 0.5) / (df + 0.5))), document lengths are the
//! same one-byte lossy fieldnorms Lucene and tantivy both use, and the score has no
//! `(k1 + 1)` factor, as in Lucene >= 8.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::{Arc, RwLock};

use rustc_hash::FxHashMap;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::fieldnorm::FieldNormReader;
use tantivy::postings::{Postings, SegmentPostings};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocAddress, DocId, DocSet, Score, Searcher, SegmentReader, Term, TERMINATED};

use crate::error::Result;

/// Lucene's idf.
pub fn idf(doc_freq: u64, num_docs: u64) -> f32 {
    let x = (num_docs.saturating_sub(doc_freq) as f32 + 0.5) / (doc_freq as f32 + 0.5);
    (1.0 + x).ln()
}

/// A scored document, ordered so that greater means better: higher score, then lower address
/// (tantivy's tie-break, so both scorers rank ties alike).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    pub score: f32,
    pub addr: DocAddress,
}

impl Eq for Hit {}

impl Ord for Hit {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.addr.cmp(&self.addr))
    }
}

impl PartialOrd for Hit {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Keeps the best `k` hits seen.
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Reverse<Hit>>,
    /// The worst kept score once `k` hits are kept (cheap rejection of most candidates).
    threshold: f32,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
            threshold: f32::NEG_INFINITY,
        }
    }

    #[inline]
    pub fn push(&mut self, hit: Hit) {
        if self.heap.len() < self.k {
            self.heap.push(Reverse(hit));
            if self.heap.len() == self.k {
                self.update_threshold();
            }
        } else if self.k > 0 && hit.score >= self.threshold {
            self.replace_worst(hit);
        }
    }

    /// For hits arriving in ascending address order (one segment): a score equal to the worst
    /// kept one loses the tie-break, so only a strictly greater score can enter.
    #[inline]
    pub fn push_ascending(&mut self, hit: Hit) {
        if self.heap.len() == self.k && hit.score <= self.threshold {
            return;
        }
        self.push(hit);
    }

    fn replace_worst(&mut self, hit: Hit) {
        if let Some(mut worst) = self.heap.peek_mut() {
            if hit > worst.0 {
                *worst = Reverse(hit);
            }
        }
        self.update_threshold();
    }

    /// The score a new hit must beat: the worst kept one, or -inf while fewer than k are kept.
    #[inline]
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    fn update_threshold(&mut self) {
        if let Some(Reverse(worst)) = self.heap.peek() {
            self.threshold = worst.score;
        }
    }

    /// Best first.
    pub fn into_sorted(self) -> Vec<Hit> {
        // Ascending order of Reverse<Hit> is best first.
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|r| r.0)
            .collect()
    }
}

/// A top-k collector that scores every matching document (tantivy's buffered union), no
/// block-WAND. For long queries (a sentence, a question) and k >= 10 this beats block-WAND,
/// which re-sorts its many term scorers at every step; ties go to the lower address, as in
/// tantivy's own `TopDocs`.
pub struct ExhaustiveTopK {
    pub k: usize,
}

pub struct SegmentTopK {
    segment_ord: u32,
    top: TopK,
}

impl Collector for ExhaustiveTopK {
    type Fruit = Vec<Hit>;
    type Child = SegmentTopK;

    fn for_segment(
        &self,
        segment_ord: u32,
        _segment: &SegmentReader,
    ) -> tantivy::Result<SegmentTopK> {
        Ok(SegmentTopK {
            segment_ord,
            top: TopK::new(self.k),
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn merge_fruits(&self, fruits: Vec<Vec<Hit>>) -> tantivy::Result<Vec<Hit>> {
        let mut top = TopK::new(self.k);
        for hit in fruits.into_iter().flatten() {
            top.push(hit);
        }
        Ok(top.into_sorted())
    }
}

impl SegmentCollector for SegmentTopK {
    type Fruit = Vec<Hit>;

    #[inline]
    fn collect(&mut self, doc: DocId, score: Score) {
        self.top.push_ascending(Hit {
            score,
            addr: DocAddress::new(self.segment_ord, doc),
        });
    }

    fn harvest(self) -> Vec<Hit> {
        self.top.into_sorted()
    }
}

/// Documents are scored window by window: a window is this many consecutive document ids.
/// Each query term also has a bound per window (see [`Bm25::bounds`]).
const WINDOW: u32 = 8192;

/// Window bounds are only worth computing for terms at least this frequent; rarer ones use
/// their idf as the bound.
const MIN_DF_FOR_BOUNDS: u32 = 512;

/// Memory the term bounds of one snapshot may take (a term takes one byte per 128 documents
/// of a segment); past it the cache starts afresh.
const BOUNDS_BUDGET_BYTES: usize = 256 << 20;

/// Bounds are inflated by this factor so that rounding can never prune a document whose
/// exact score would have entered the top k.
const BOUND_SLACK: f64 = 1.0 + 1e-5;

/// Fine bounds cover this many consecutive document ids.
const BLOCK_SHIFT: u32 = 7;

/// Where one term's `tf / (tf + n)` can be large in one segment: the maximum over each block
/// of 128 document ids and over each window, rounded up to multiples of 1/255.
pub struct TermBounds {
    blocks: Box<[u8]>,
    windows: Box<[u8]>,
}

impl TermBounds {
    /// The quantized bound (0-255) of the block of `doc`.
    #[inline]
    fn block(&self, doc: DocId) -> f64 {
        f64::from(self.blocks[(doc >> BLOCK_SHIFT) as usize])
    }

    /// The quantized bound (0-255) of window `w`.
    #[inline]
    fn window(&self, w: usize) -> f64 {
        f64::from(self.windows[w])
    }
}

/// The bounds of the terms queries have used, by (segment ordinal, term).
#[derive(Default)]
struct BoundsCache {
    terms: FxHashMap<(u32, Term), Arc<TermBounds>>,
    bytes: usize,
}

/// Lucene's BM25 (any k1, b) over one snapshot of the index, with exact top-k search.
///
/// Searching uses block-max MaxScore (Turtle & Flood's MaxScore with per-window score
/// bounds, the shape of Lucene's `MaxScoreBulkScorer`): in each window of document ids the
/// terms are sorted by the most they can add there; the cheapest ones whose bounds together
/// cannot lift a document above the current k-th score are "non-essential" and are only
/// looked up (by skipping) for candidates found through the other terms. A window where no
/// term can lift a document that far is skipped. The window bounds of a term are computed
/// the first time a query uses it (one pass over its postings) and kept for this snapshot.
///
/// A document's score is summed in f64, where the few f32 contributions add exactly, so it
/// does not depend on the order the terms were visited in: the top m of a search is always
/// the head of its top k, whatever was pruned.
pub struct Bm25 {
    field: Field,
    num_docs: u64,
    /// `k1 * (1 - b + b * dl / avgdl)` for each one-byte fieldnorm id.
    norm: [f32; 256],
    bounds: RwLock<BoundsCache>,
}

/// One query term in one segment.
struct Clause {
    postings: SegmentPostings,
    weight: f32,
    bounds: Option<Arc<TermBounds>>,
    /// `weight` times the slack over 255: turns a quantized share into a score bound.
    scale: f64,
    /// The most the clause adds anywhere (its weight, with slack).
    max: f64,
    /// The clause's bound in the current window.
    bound: f64,
}

impl Clause {
    /// The most this clause can add in the block of `doc`.
    #[inline]
    fn block_bound(&self, doc: DocId) -> f64 {
        match &self.bounds {
            Some(m) => self.scale * m.block(doc),
            None => self.max,
        }
    }
}

impl Bm25 {
    pub fn new(searcher: &Searcher, field: Field, k1: f32, b: f32) -> Result<Self> {
        let num_docs: u64 = searcher
            .segment_readers()
            .iter()
            .map(|s| u64::from(s.max_doc()))
            .sum();
        let mut total_tokens = 0u64;
        for seg in searcher.segment_readers() {
            total_tokens += seg.inverted_index(field)?.total_num_tokens();
        }
        let avgdl = if num_docs == 0 {
            1.0
        } else {
            (total_tokens as f32 / num_docs as f32).max(f32::MIN_POSITIVE)
        };
        let mut norm = [0f32; 256];
        for (id, slot) in norm.iter_mut().enumerate() {
            let dl = FieldNormReader::id_to_fieldnorm(id as u8) as f32;
            *slot = k1 * (1.0 - b + b * dl / avgdl);
        }
        Ok(Bm25 {
            field,
            num_docs,
            norm,
            bounds: RwLock::new(BoundsCache::default()),
        })
    }

    /// `tf / (tf + n)`: a term's share of its idf in one document.
    #[inline]
    fn saturation(&self, tf: u32, fieldnorm_id: u8) -> f32 {
        let tf = tf as f32;
        tf / (tf + self.norm[fieldnorm_id as usize])
    }

    /// The window bounds of `term` in segment `ord`, computed on first use.
    fn bounds(
        &self,
        ord: u32,
        seg: &SegmentReader,
        term: &Term,
        fieldnorms: &FieldNormReader,
    ) -> Result<Arc<TermBounds>> {
        let key = (ord, term.clone());
        if let Some(found) = self
            .bounds
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .terms
            .get(&key)
        {
            return Ok(found.clone());
        }
        let max_doc = seg.max_doc();
        let mut blocks = vec![0u8; max_doc.div_ceil(1 << BLOCK_SHIFT) as usize];
        if let Some(mut postings) = seg
            .inverted_index(self.field)?
            .read_postings(term, IndexRecordOption::WithFreqs)?
        {
            let mut doc = postings.doc();
            while doc != TERMINATED {
                let s = self.saturation(postings.term_freq(), fieldnorms.fieldnorm_id(doc));
                // Round up, so the bound is never below the share it covers.
                let q = (f64::from(s) * 255.0).ceil().min(255.0) as u8;
                let slot = &mut blocks[(doc >> BLOCK_SHIFT) as usize];
                *slot = (*slot).max(q);
                doc = postings.advance();
            }
        }
        let per_window = (WINDOW >> BLOCK_SHIFT) as usize;
        let windows = blocks
            .chunks(per_window)
            .map(|c| c.iter().copied().max().unwrap_or(0))
            .collect();
        let maxima: Arc<TermBounds> = Arc::new(TermBounds {
            blocks: blocks.into(),
            windows,
        });
        let mut cache = self
            .bounds
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let bytes = maxima.blocks.len() + maxima.windows.len();
        if cache.bytes + bytes > BOUNDS_BUDGET_BYTES {
            cache.terms.clear();
            cache.bytes = 0;
        }
        if cache.terms.insert(key, maxima.clone()).is_none() {
            cache.bytes += bytes;
        }
        Ok(maxima)
    }

    /// The query's unique terms in first-seen order, each weighted by its idf times how often
    /// the query repeats it; terms no document has are left out.
    fn weighted_terms(&self, searcher: &Searcher, terms: &[String]) -> Result<Vec<(Term, f32)>> {
        let mut weighted: Vec<(Term, f32)> = Vec::new();
        for text in terms {
            let term = Term::from_field_text(self.field, text);
            if let Some(entry) = weighted.iter_mut().find(|(t, _)| *t == term) {
                entry.1 += 1.0;
            } else {
                weighted.push((term, 1.0));
            }
        }
        let mut clauses = Vec::with_capacity(weighted.len());
        for (term, count) in weighted {
            let df = searcher.doc_freq(&term)?;
            if df > 0 {
                clauses.push((term, count * idf(df, self.num_docs)));
            }
        }
        Ok(clauses)
    }

    /// The score of the live document at `addr` for the analyzed query `terms`, exactly as
    /// [`Bm25::search`] scores it (0 when it has none of the terms).
    pub fn score_doc(
        &self,
        searcher: &Searcher,
        terms: &[String],
        addr: DocAddress,
    ) -> Result<f32> {
        let clauses = self.weighted_terms(searcher, terms)?;
        let seg = searcher.segment_reader(addr.segment_ord);
        let inverted = seg.inverted_index(self.field)?;
        let fieldnorm_id = seg
            .get_fieldnorms_reader(self.field)?
            .fieldnorm_id(addr.doc_id);
        let mut score = 0f64;
        for (term, weight) in &clauses {
            let Some(mut postings) = inverted.read_postings(term, IndexRecordOption::WithFreqs)?
            else {
                continue;
            };
            let mut doc = postings.doc();
            if doc < addr.doc_id {
                doc = postings.seek(addr.doc_id);
            }
            if doc == addr.doc_id {
                score += f64::from(weight * self.saturation(postings.term_freq(), fieldnorm_id));
            }
        }
        Ok(score as f32)
    }

    /// The score a document made of the analyzed `doc_terms` would get for the analyzed
    /// query `terms` if it were in the index, against this snapshot's statistics (N, df,
    /// average length); its length is rounded to a one-byte fieldnorm as an indexed one is.
    pub fn score_text(
        &self,
        searcher: &Searcher,
        terms: &[String],
        doc_terms: &[String],
    ) -> Result<f32> {
        if self.num_docs == 0 || terms.is_empty() || doc_terms.is_empty() {
            return Ok(0.0);
        }
        let fieldnorm_id = FieldNormReader::fieldnorm_to_id(doc_terms.len() as u32);
        let mut tf: FxHashMap<&str, u32> = FxHashMap::default();
        for t in doc_terms {
            *tf.entry(t.as_str()).or_default() += 1;
        }
        let mut counted: Vec<(&str, f32)> = Vec::new();
        for t in terms {
            match counted.iter_mut().find(|(x, _)| *x == t.as_str()) {
                Some(entry) => entry.1 += 1.0,
                None => counted.push((t.as_str(), 1.0)),
            }
        }
        let mut score = 0f64;
        for (text, count) in counted {
            let Some(&freq) = tf.get(text) else {
                continue;
            };
            let df = searcher.doc_freq(&Term::from_field_text(self.field, text))?;
            if df == 0 {
                continue;
            }
            let weight = count * idf(df, self.num_docs);
            score += f64::from(weight * self.saturation(freq, fieldnorm_id));
        }
        Ok(score as f32)
    }

    /// Top `k` documents for the analyzed query `terms` (repeats count, as in Lucene's
    /// bag-of-words queries).
    pub fn search(&self, searcher: &Searcher, terms: &[String], k: usize) -> Result<Vec<Hit>> {
        if self.num_docs == 0 || terms.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let clauses = self.weighted_terms(searcher, terms)?;

        let mut top = TopK::new(k);
        let mut window = Window::default();
        for (ord, seg) in searcher.segment_readers().iter().enumerate() {
            let ord = ord as u32;
            let inverted = seg.inverted_index(self.field)?;
            let fieldnorms = seg.get_fieldnorms_reader(self.field)?;
            let mut segment_clauses = Vec::with_capacity(clauses.len());
            for (term, weight) in &clauses {
                let Some(postings) = inverted.read_postings(term, IndexRecordOption::WithFreqs)?
                else {
                    continue;
                };
                let bounds = if postings.doc_freq() >= MIN_DF_FOR_BOUNDS {
                    Some(self.bounds(ord, seg, term, &fieldnorms)?)
                } else {
                    None
                };
                let max = f64::from(*weight) * BOUND_SLACK;
                segment_clauses.push(Clause {
                    postings,
                    weight: *weight,
                    bounds,
                    scale: max / 255.0,
                    max,
                    bound: max,
                });
            }
            let alive = seg.alive_bitset();
            self.max_score(
                Segment {
                    ord,
                    max_doc: seg.max_doc(),
                    fieldnorms: &fieldnorms,
                    is_alive: |doc| alive.is_none_or(|a| a.is_alive(doc)),
                },
                segment_clauses,
                &mut top,
                &mut window,
            );
        }
        Ok(top.into_sorted())
    }

    fn max_score<F: Fn(DocId) -> bool>(
        &self,
        seg: Segment<'_, F>,
        mut clauses: Vec<Clause>,
        top: &mut TopK,
        window: &mut Window,
    ) {
        let n = clauses.len();
        // Clauses in ascending order of their bound in the current window (indices: the
        // clauses themselves are large and stay put).
        let mut order: Vec<usize> = (0..n).collect();
        // upto[i]: the most the clauses order[..i] can add together.
        let mut upto = vec![0f64; n + 1];
        let mut rest_blocks = [0f64; (WINDOW >> BLOCK_SHIFT) as usize];
        for start in (0..seg.max_doc).step_by(WINDOW as usize) {
            let end = start.saturating_add(WINDOW).min(seg.max_doc);
            let w = (start / WINDOW) as usize;
            for c in clauses.iter_mut() {
                c.bound = c.bounds.as_ref().map_or(c.max, |m| c.scale * m.window(w));
            }
            order.sort_unstable_by(|&x, &y| clauses[x].bound.total_cmp(&clauses[y].bound));
            for i in 0..n {
                upto[i + 1] = upto[i] + clauses[order[i]].bound;
            }
            let theta = f64::from(top.threshold());
            let mut essential_from = 0;
            while essential_from < n && upto[essential_from + 1] <= theta {
                essential_from += 1;
            }
            if essential_from == n {
                continue; // no document of this window can enter the top k
            }
            let (lookups, essential) = order.split_at(essential_from);
            let mut any = false;
            for &e in essential {
                let c = &mut clauses[e];
                let mut doc = c.postings.doc();
                if doc < start {
                    doc = c.postings.seek(start);
                }
                while doc < end {
                    let i = (doc - start) as usize;
                    let tf = c.postings.term_freq();
                    let s = c.weight * self.saturation(tf, seg.fieldnorms.fieldnorm_id(doc));
                    window.scores[i] += f64::from(s);
                    window.touched[i / 64] |= 1 << (i % 64);
                    any = true;
                    doc = c.postings.advance();
                }
            }
            if !any {
                continue;
            }
            // What the non-essential terms can add in each block of the window.
            let blocks_in_window = (end - start).div_ceil(1 << BLOCK_SHIFT) as usize;
            for (b, rest) in rest_blocks.iter_mut().enumerate().take(blocks_in_window) {
                let first_doc = start + ((b as u32) << BLOCK_SHIFT);
                *rest = lookups
                    .iter()
                    .map(|&l| clauses[l].block_bound(first_doc))
                    .sum();
            }
            let all_lookups = upto[essential_from];
            for word in 0..window.touched.len() {
                let mut bits = std::mem::take(&mut window.touched[word]);
                while bits != 0 {
                    let i = word * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let doc = start + i as u32;
                    let mut score = std::mem::take(&mut window.scores[i]);
                    let theta = f64::from(top.threshold());
                    if score + all_lookups <= theta || !(seg.is_alive)(doc) {
                        continue;
                    }
                    // Complete the score from the non-essential terms, the most valuable
                    // first, giving up once even their bounds in this document's block
                    // cannot make it enter.
                    let mut rest = rest_blocks[i >> BLOCK_SHIFT];
                    let mut pruned = false;
                    for &l in lookups.iter().rev() {
                        if score + rest <= theta {
                            pruned = true;
                            break;
                        }
                        let c = &mut clauses[l];
                        rest -= c.block_bound(doc);
                        let mut at = c.postings.doc();
                        if at < doc {
                            at = c.postings.seek(doc);
                        }
                        if at == doc {
                            let tf = c.postings.term_freq();
                            let s =
                                c.weight * self.saturation(tf, seg.fieldnorms.fieldnorm_id(doc));
                            score += f64::from(s);
                        }
                    }
                    if !pruned && score > theta {
                        top.push_ascending(Hit {
                            score: score as f32,
                            addr: DocAddress::new(seg.ord, doc),
                        });
                    }
                }
            }
        }
    }
}

/// What [`Bm25::max_score`] needs of one segment.
struct Segment<'a, F: Fn(DocId) -> bool> {
    ord: u32,
    max_doc: DocId,
    fieldnorms: &'a FieldNormReader,
    is_alive: F,
}

/// Per-window scratch space: f64 partial scores and a bitset of the documents touched.
struct Window {
    scores: Vec<f64>,
    touched: Vec<u64>,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            scores: vec![0.0; WINDOW as usize],
            touched: vec![0; WINDOW as usize / 64],
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every document matching `terms`, scored without any pruning, best first.
    pub(crate) fn exhaustive(bm25: &Bm25, searcher: &Searcher, terms: &[String]) -> Vec<Hit> {
        let clauses = bm25.weighted_terms(searcher, terms).unwrap();
        let mut hits = Vec::new();
        for (ord, seg) in searcher.segment_readers().iter().enumerate() {
            let inverted = seg.inverted_index(bm25.field).unwrap();
            let fieldnorms = seg.get_fieldnorms_reader(bm25.field).unwrap();
            let mut scores = vec![0f64; seg.max_doc() as usize];
            let mut matched = vec![false; seg.max_doc() as usize];
            for (term, weight) in &clauses {
                let postings = inverted
                    .read_postings(term, IndexRecordOption::WithFreqs)
                    .unwrap();
                let Some(mut postings) = postings else {
                    continue;
                };
                let mut doc = postings.doc();
                while doc != TERMINATED {
                    let share = bm25.saturation(postings.term_freq(), fieldnorms.fieldnorm_id(doc));
                    scores[doc as usize] += f64::from(weight * share);
                    matched[doc as usize] = true;
                    doc = postings.advance();
                }
            }
            for (doc, score) in scores.into_iter().enumerate() {
                if matched[doc] {
                    hits.push(Hit {
                        score: score as f32,
                        addr: DocAddress::new(ord as u32, doc as u32),
                    });
                }
            }
        }
        hits.sort_by(|a, b| b.cmp(a));
        hits
    }

    #[test]
    fn topk_keeps_best_and_breaks_ties_by_address() {
        let mut top = TopK::new(3);
        for (i, s) in [1.0, 5.0, 3.0, 5.0, 0.5, 4.0].iter().enumerate() {
            top.push(Hit {
                score: *s,
                addr: DocAddress::new(0, i as u32),
            });
        }
        let got: Vec<(f32, u32)> = top
            .into_sorted()
            .iter()
            .map(|h| (h.score, h.addr.doc_id))
            .collect();
        assert_eq!(got, vec![(5.0, 1), (5.0, 3), (4.0, 5)]);
    }

    #[test]
    fn ascending_pushes_match_plain_pushes() {
        let scores = [3.0, 1.0, 3.0, 2.0, 3.0, 0.5, 2.0, 4.0, 1.0, 3.0];
        for k in 0..6 {
            let mut plain = TopK::new(k);
            let mut ascending = TopK::new(k);
            for (i, s) in scores.iter().enumerate() {
                let hit = Hit {
                    score: *s,
                    addr: DocAddress::new(0, i as u32),
                };
                plain.push(hit);
                ascending.push_ascending(hit);
            }
            assert_eq!(plain.into_sorted(), ascending.into_sorted(), "k={k}");
        }
    }

    #[test]
    fn idf_is_lucenes() {
        // N=10, df=1: ln(1 + 9.5 / 1.5)
        assert!((idf(1, 10) - (1.0f32 + 9.5 / 1.5).ln()).abs() < 1e-6);
        assert!(idf(10, 10) > 0.0);
    }
}
