//! Lucene's BM25 for any k1 and b, over tantivy's postings and fieldnorms.
//!
//! tantivy hard-codes k1=1.2, b=0.75; for other values this scores term at a time into a
//! dense accumulator per segment. Statistics are tantivy's (N = documents in all segments,
//! avgdl = tokens / N, idf = ln(1 + (N - df + 0.5) / (df + 0.5))), document lengths are the
//! same one-byte lossy fieldnorms Lucene and tantivy both use, and the score has no
//! `(k1 + 1)` factor, as in Lucene >= 8.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::fieldnorm::FieldNormReader;
use tantivy::postings::Postings;
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

/// Top `k` documents for the analyzed query `terms` (repeats count, as in Lucene's
/// bag-of-words queries), scored with Lucene's BM25 at `k1`, `b`.
pub fn search(
    searcher: &Searcher,
    field: Field,
    terms: &[String],
    k: usize,
    k1: f32,
    b: f32,
) -> Result<Vec<Hit>> {
    let num_docs: u64 = searcher
        .segment_readers()
        .iter()
        .map(|s| u64::from(s.max_doc()))
        .sum();
    let mut total_tokens = 0u64;
    for seg in searcher.segment_readers() {
        total_tokens += seg.inverted_index(field)?.total_num_tokens();
    }
    if num_docs == 0 || total_tokens == 0 || terms.is_empty() || k == 0 {
        return Ok(Vec::new());
    }
    let avgdl = total_tokens as f32 / num_docs as f32;
    let mut norm = [0f32; 256];
    for (id, slot) in norm.iter_mut().enumerate() {
        let dl = FieldNormReader::id_to_fieldnorm(id as u8) as f32;
        *slot = k1 * (1.0 - b + b * dl / avgdl);
    }

    // Unique terms in first-seen order, weighted by idf times how often the query repeats them.
    let mut weighted: Vec<(Term, f32)> = Vec::new();
    for text in terms {
        let term = Term::from_field_text(field, text);
        if let Some(entry) = weighted.iter_mut().find(|(t, _)| *t == term) {
            entry.1 += 1.0;
        } else {
            weighted.push((term, 1.0));
        }
    }
    let mut clauses: Vec<(Term, f32)> = Vec::with_capacity(weighted.len());
    for (term, count) in weighted {
        let df = searcher.doc_freq(&term)?;
        if df > 0 {
            clauses.push((term, count * idf(df, num_docs)));
        }
    }

    let mut top = TopK::new(k);
    let mut acc: Vec<f32> = Vec::new();
    for (ord, seg) in searcher.segment_readers().iter().enumerate() {
        let inverted = seg.inverted_index(field)?;
        let fieldnorms = seg.get_fieldnorms_reader(field)?;
        acc.clear();
        acc.resize(seg.max_doc() as usize, 0.0);
        for (term, weight) in &clauses {
            let Some(mut postings) = inverted.read_postings(term, IndexRecordOption::WithFreqs)?
            else {
                continue;
            };
            let mut doc = postings.doc();
            while doc != TERMINATED {
                let tf = postings.term_freq() as f32;
                let n = norm[fieldnorms.fieldnorm_id(doc) as usize];
                if let Some(slot) = acc.get_mut(doc as usize) {
                    *slot += weight * (tf / (tf + n));
                }
                doc = postings.advance();
            }
        }
        let alive = seg.alive_bitset();
        for (doc, &score) in acc.iter().enumerate() {
            let doc = doc as u32;
            if score > 0.0 && alive.is_none_or(|a| a.is_alive(doc)) {
                top.push_ascending(Hit {
                    score,
                    addr: DocAddress::new(ord as u32, doc),
                });
            }
        }
    }
    Ok(top.into_sorted())
}

#[cfg(test)]
mod tests {
    use super::*;

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
