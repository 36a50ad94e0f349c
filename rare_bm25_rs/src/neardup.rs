//! The near-duplicate rule of `rare.text.NearDuplicateRule`, bit for bit.
//!
//! Both texts are lowercased and cut into tokens (see [`crate::analysis::tokenize`]); each
//! becomes the set of its word n-grams (a text shorter than `ngram` tokens is one n-gram of
//! all its tokens, an empty text has none). Two sets are near-duplicates when they share at
//! least `min_shared` n-grams or at least `min_fraction` of the smaller set.
//!
//! Tokens are numbered by a [`Vocabulary`] shared by the texts being compared, so an n-gram
//! is a slice of token ids: compared exactly, hashed cheaply, never joined into a string.

use rustc_hash::{FxHashMap, FxHashSet};

use crate::analysis::for_each_token;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NearDupRule {
    pub ngram: usize,
    pub min_shared: usize,
    pub min_fraction: f64,
}

impl Default for NearDupRule {
    fn default() -> Self {
        NearDupRule {
            ngram: 8,
            min_shared: 25,
            min_fraction: 0.5,
        }
    }
}

/// Numbers the distinct tokens of the texts compared with one another.
#[derive(Default)]
pub struct Vocabulary {
    ids: FxHashMap<String, u32>,
}

impl Vocabulary {
    /// The tokens of `text` (as `rare.text.tokenize` cuts them), as ids.
    pub fn token_ids(&mut self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for_each_token(text, |token| {
            let id = match self.ids.get(token) {
                Some(&id) => id,
                None => {
                    let id = self.ids.len() as u32;
                    self.ids.insert(token.to_string(), id);
                    id
                }
            };
            out.push(id);
        });
        out
    }
}

/// The n-gram set of one text: slices of its token ids.
pub type Shingles<'a> = FxHashSet<&'a [u32]>;

impl NearDupRule {
    pub fn validate(&self) -> Result<(), String> {
        if self.ngram < 1
            || self.min_shared < 1
            || !(self.min_fraction > 0.0 && self.min_fraction <= 1.0)
        {
            return Err(format!(
                "near-duplicate rule needs ngram >= 1, min_shared >= 1 and 0 < min_fraction <= 1, \
                 got ngram={}, min_shared={}, min_fraction={}",
                self.ngram, self.min_shared, self.min_fraction
            ));
        }
        Ok(())
    }

    /// The n-grams of a text given as token ids.
    pub fn shingles<'a>(&self, ids: &'a [u32]) -> Shingles<'a> {
        if ids.is_empty() {
            return Shingles::default();
        }
        if ids.len() < self.ngram {
            return std::iter::once(ids).collect();
        }
        ids.windows(self.ngram).collect()
    }

    pub fn same(&self, a: &Shingles, b: &Shingles) -> bool {
        if a.is_empty() || b.is_empty() {
            return false;
        }
        let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
        let shared = small.iter().filter(|s| large.contains(*s)).count();
        shared >= self.min_shared || shared as f64 >= self.min_fraction * small.len() as f64
    }

    pub fn is_near_duplicate(&self, a: &str, b: &str) -> bool {
        let mut vocabulary = Vocabulary::default();
        let (a, b) = (vocabulary.token_ids(a), vocabulary.token_ids(b));
        self.same(&self.shingles(&a), &self.shingles(&b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(range: std::ops::Range<usize>) -> String {
        range.map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn empty_text_is_never_a_duplicate() {
        let rule = NearDupRule::default();
        assert!(!rule.is_near_duplicate("", ""));
        assert!(!rule.is_near_duplicate("", "some words here"));
        assert!(!rule.is_near_duplicate("...", "..."));
    }

    #[test]
    fn short_texts_are_one_ngram() {
        let rule = NearDupRule::default();
        let ids = Vocabulary::default().token_ids("Three Short words");
        assert_eq!(rule.shingles(&ids).len(), 1);
        assert!(rule.is_near_duplicate("Three short words!", "three, SHORT words"));
        assert!(!rule.is_near_duplicate("three short words", "three short words more"));
    }

    #[test]
    fn shared_passage_counts() {
        let rule = NearDupRule::default();
        // 32 common words give 25 common 8-grams: enough on its own.
        let a = format!("{} {}", words(0..500), words(1000..1032));
        let b = format!("{} {}", words(1000..1032), words(2000..2500));
        assert!(rule.is_near_duplicate(&a, &b));
        // 31 common words give 24: neither threshold is met.
        let a = format!("{} {}", words(0..500), words(1000..1031));
        let b = format!("{} {}", words(1000..1031), words(2000..2500));
        assert!(!rule.is_near_duplicate(&a, &b));
    }

    #[test]
    fn fraction_of_the_smaller_set() {
        let rule = NearDupRule::default();
        // 20 tokens -> 13 8-grams, 7 of them shared with the longer text: 7 >= 6.5.
        let small = words(0..20);
        let large = format!("{} {}", words(6..20), words(100..400));
        assert!(rule.is_near_duplicate(&small, &large));
        let large = format!("{} {}", words(7..20), words(100..400));
        assert!(!rule.is_near_duplicate(&small, &large));
    }

    #[test]
    fn validate_rejects_bad_thresholds() {
        let bad = NearDupRule {
            ngram: 0,
            ..NearDupRule::default()
        };
        assert!(bad.validate().is_err());
        let bad = NearDupRule {
            min_fraction: 1.5,
            ..NearDupRule::default()
        };
        assert!(bad.validate().is_err());
        assert!(NearDupRule::default().validate().is_ok());
    }
}
