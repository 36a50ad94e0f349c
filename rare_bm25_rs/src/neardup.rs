//! The near-duplicate rule of `rare.text.NearDuplicateRule`, bit for bit.
//!
//! Both texts are lowercased and cut into tokens (runs of letters and digits, each CJK
//! character a token of its own: [`crate::analysis::for_each_shingle_token`]). A word
//! weighs [`WORD_WEIGHT`], a CJK character [`CJK_WEIGHT`] (a Chinese word is 1.6
//! characters on average: 3/5 of a word each). Each text becomes the set of its shingles:
//! from every token, the fewest tokens in a row that weigh `ngram` words (`ngram` words in
//! English, 14 characters in Chinese); a text lighter than that is one shingle of all its
//! tokens, an empty text has none. Two sets are near-duplicates when their shared shingles
//! weigh at least `min_shared` words (each shingle weighs as its first token) or number at
//! least `min_fraction` of the smaller set. In English this is plain word n-grams.
//!
//! Tokens are numbered by a [`Vocabulary`] shared by the texts being compared, so a shingle
//! is a slice of token ids: compared exactly, hashed cheaply, never joined into a string.
//! A CJK character's id has [`CJK_BIT`] set, which gives its weight.

use rustc_hash::{FxHashMap, FxHashSet};

use crate::analysis::for_each_shingle_token;

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

/// What a word weighs in a shingle; `ngram` and `min_shared` count words.
pub const WORD_WEIGHT: usize = 5;
/// What a CJK character weighs.
pub const CJK_WEIGHT: usize = 3;
/// Set in the id of a CJK character.
pub const CJK_BIT: u32 = 1 << 31;

#[inline]
fn weight(id: u32) -> usize {
    if id & CJK_BIT != 0 {
        CJK_WEIGHT
    } else {
        WORD_WEIGHT
    }
}

/// Numbers the distinct tokens of the texts compared with one another.
#[derive(Default)]
pub struct Vocabulary {
    ids: FxHashMap<String, u32>,
}

impl Vocabulary {
    /// The tokens of `text` (as `rare.text.shingle_tokens` cuts them), as ids.
    pub fn token_ids(&mut self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for_each_shingle_token(text, |token| {
            let id = match self.ids.get(token) {
                Some(&id) => id,
                None => {
                    let cjk = token.chars().next().is_some_and(crate::cjk::is_cjk);
                    let id = self.ids.len() as u32 | if cjk { CJK_BIT } else { 0 };
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

    /// The shingles of a text given as token ids (see the module docs).
    pub fn shingles<'a>(&self, ids: &'a [u32]) -> Shingles<'a> {
        if ids.is_empty() {
            return Shingles::default();
        }
        let target = self.ngram * WORD_WEIGHT;
        if ids.iter().all(|id| id & CJK_BIT == 0) {
            // Words only: plain n-grams.
            if ids.len() < self.ngram {
                return std::iter::once(ids).collect();
            }
            return ids.windows(self.ngram).collect();
        }
        let mut out = Shingles::default();
        // ids[start..end] weighs `sum`; each start takes the shortest end reaching `target`.
        let (mut end, mut sum) = (0, 0);
        for start in 0..ids.len() {
            while sum < target && end < ids.len() {
                sum += weight(ids[end]);
                end += 1;
            }
            if sum < target {
                break;
            }
            out.insert(&ids[start..end]);
            sum -= weight(ids[start]);
        }
        if out.is_empty() {
            out.insert(ids); // lighter than one shingle: the whole text
        }
        out
    }

    pub fn same(&self, a: &Shingles, b: &Shingles) -> bool {
        if a.is_empty() || b.is_empty() {
            return false;
        }
        let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
        let (mut shared, mut weighs) = (0, 0);
        for shingle in small.iter().filter(|s| large.contains(*s)) {
            shared += 1;
            weighs += shingle.first().map_or(WORD_WEIGHT, |id| weight(*id));
        }
        weighs >= self.min_shared * WORD_WEIGHT
            || shared as f64 >= self.min_fraction * small.len() as f64
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
    fn cjk_characters_are_tokens() {
        let mut vocabulary = Vocabulary::default();
        assert_eq!(vocabulary.token_ids("中文ab，中x").len(), 5);
        let rule = NearDupRule::default();
        let text: String = (0..400)
            .map(|i| char::from_u32(0x4E00 + (i * 7919) % 20000).unwrap())
            .collect();
        let chars: Vec<char> = text.chars().collect();
        let a: String = chars[..200].iter().collect();
        // 14-character shingles, each weighing 3/5 of a word: 42 shared shingles (55
        // characters in common) weigh 126 >= 125; 41 (54 characters) weigh 123.
        let b: String = chars[145..].iter().collect();
        assert!(rule.is_near_duplicate(&a, &b));
        let b: String = chars[146..].iter().collect();
        assert!(!rule.is_near_duplicate(&a, &b));
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
