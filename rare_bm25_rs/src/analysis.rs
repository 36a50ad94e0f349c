//! The analyzers: two English ones (this file) and two Chinese ones ([`crate::cjk`]).
//!
//! English: lowercase, tokenize, drop Lucene's 33 stop words, Porter-stem.
//! Two tokenizers, one pipeline:
//! - [`Analyzer::Lucene`] (the default) approximates Lucene's `StandardTokenizer` (Unicode
//!   word boundaries, UAX #29) and `EnglishPossessiveFilter`: `3.14`, `1,000`, `don't`,
//!   `u.s.a` and `snake_case` stay single tokens, a trailing `'s` is dropped, each CJK
//!   ideograph is a token of its own.
//! - [`Analyzer::Rare`] is `rare.text.EnglishAnalyzer` exactly: tokens are maximal runs of
//!   letters and digits (Python's `[^\W_]+` on `str.lower()`), as rare's Python backends and
//!   the near-duplicate rule cut text.
//!
//! Both stem with the original Porter algorithm: "lucene" as Lucene's `PorterStemmer` (Porter's
//! reference code, see [`crate::porter`]), "rare" as Snowball's `porter` (PyStemmer's).
//! Both also drop English possessives, "lucene" after tokenizing as Lucene does, "rare"
//! before, as `rare.text` does.
//!
//! Chinese: [`Analyzer::Cjk`] (Lucene's `CJKAnalyzer`: CJK bigrams, other words as words)
//! and [`Analyzer::Jieba`] (jieba word segmentation); see [`crate::cjk`].

use frostem::{Algorithm, Stemmer};

use crate::cjk;
use crate::porter;
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};
use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};

/// Lucene's `EnglishAnalyzer.ENGLISH_STOP_WORDS_SET`, sorted for binary search.
pub const LUCENE_ENGLISH_STOPWORDS: [&str; 33] = [
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with",
];

/// Lucene's `StandardAnalyzer.DEFAULT_MAX_TOKEN_LENGTH`: longer tokens are cut into pieces.
const LUCENE_MAX_TOKEN_CHARS: usize = 255;

/// The languages an index can be built for, each with its analyzers (the default first).
pub const LANGUAGES: [(&str, &[Analyzer]); 2] = [
    ("en", &[Analyzer::Lucene, Analyzer::Rare]),
    ("zh", &[Analyzer::Cjk, Analyzer::Jieba]),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Analyzer {
    Lucene,
    Rare,
    Cjk,
    Jieba,
}

impl Analyzer {
    pub const ALL: [Analyzer; 4] = [
        Analyzer::Lucene,
        Analyzer::Rare,
        Analyzer::Cjk,
        Analyzer::Jieba,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Analyzer::Lucene => "lucene",
            Analyzer::Rare => "rare",
            Analyzer::Cjk => "cjk",
            Analyzer::Jieba => "jieba",
        }
    }

    pub fn from_name(name: &str) -> Option<Analyzer> {
        Analyzer::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The language the analyzer is for: "en" or "zh".
    pub fn language(self) -> &'static str {
        match self {
            Analyzer::Lucene | Analyzer::Rare => "en",
            Analyzer::Cjk | Analyzer::Jieba => "zh",
        }
    }

    /// The default analyzer of a language (None for an unknown language).
    pub fn default_for(language: &str) -> Option<Analyzer> {
        LANGUAGES
            .iter()
            .find(|(name, _)| *name == language)
            .map(|(_, analyzers)| analyzers[0])
    }

    /// "en (lucene, rare), zh (cjk, jieba)": what error messages list.
    pub fn known() -> String {
        LANGUAGES
            .iter()
            .map(|(language, analyzers)| {
                let names: Vec<&str> = analyzers.iter().map(|a| a.name()).collect();
                format!("{language} ({})", names.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn is_english(self) -> bool {
        matches!(self, Analyzer::Lucene | Analyzer::Rare)
    }

    /// The name the analyzer is registered under in a tantivy index (versioned: an index
    /// built with another version of an analyzer is refused).
    pub fn tokenizer_name(self) -> &'static str {
        match self {
            Analyzer::Lucene => "rare_en_lucene_porter_v1",
            Analyzer::Rare => "rare_en_porter_v1",
            Analyzer::Cjk => "rare_zh_cjk_bigram_v1",
            Analyzer::Jieba => "rare_zh_jieba_v1",
        }
    }

    pub fn from_tokenizer_name(name: &str) -> Option<Analyzer> {
        Analyzer::ALL
            .into_iter()
            .find(|a| a.tokenizer_name() == name)
    }

    /// Calls `sink(word)` for every word of `text`: lowercased and without its possessive,
    /// before stop words and stemming (see [`Analyzer::term`]). A Chinese analyzer's words
    /// are its terms.
    pub fn for_each_word(self, text: &str, mut sink: impl FnMut(&str)) {
        match self {
            Analyzer::Cjk => cjk::for_each_cjk_term(text, sink),
            Analyzer::Jieba => cjk::for_each_jieba_term(text, sink),
            Analyzer::Rare => {
                let lower = drop_possessives(text).to_lowercase();
                for_each_run(&lower, |s, e| sink(&lower[s..e]));
            }
            Analyzer::Lucene => {
                let lower = lucene_lowercase(text);
                for_each_word(&lower, |s, e| sink(strip_possessive(&lower[s..e])));
            }
        }
    }

    /// The indexed term of one word of [`Analyzer::for_each_word`]: its stem, or None for a
    /// stop word (and for a word that stems to nothing).
    pub fn term(self, word: &str) -> Option<String> {
        if !self.is_english() {
            return (!word.is_empty()).then(|| word.to_string());
        }
        if word.is_empty() || is_stopword(word) {
            return None;
        }
        let term = match self {
            Analyzer::Cjk | Analyzer::Jieba => word.to_string(),
            // Snowball's Porter stems a lone "s" to "": rare drops empty terms.
            Analyzer::Rare => Stemmer::new(Algorithm::Porter).stem(word).into_owned(),
            Analyzer::Lucene => porter::stem(word),
        };
        (!term.is_empty()).then_some(term)
    }

    /// Calls `sink(term)` for every indexed term of `text`.
    pub fn for_each_term(self, text: &str, mut sink: impl FnMut(String)) {
        if !self.is_english() {
            return self.for_each_word(text, |word| sink(word.to_string()));
        }
        self.for_each_word(text, |word| {
            if let Some(term) = self.term(word) {
                sink(term);
            }
        });
    }

    pub fn analyze(self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.for_each_term(text, |t| out.push(t));
        out
    }
}

// -- the rare tokenizer: runs of letters and digits ---------------------------------------

/// What Python's regex `\w` minus `_` accepts: Unicode letters and numbers.
#[inline]
pub fn is_token_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric();
    }
    matches!(
        c.general_category_group(),
        GeneralCategoryGroup::Letter | GeneralCategoryGroup::Number
    )
}

/// Calls `sink(start, end)` for every run of letters and digits of `lower`.
fn for_each_run(lower: &str, mut sink: impl FnMut(usize, usize)) {
    let mut start: Option<usize> = None;
    for (i, c) in lower.char_indices() {
        match (is_token_char(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                sink(s, i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        sink(s, lower.len());
    }
}

/// `rare.text`'s possessive rule: `'s` or `’s` (either case) right after a letter or digit
/// and not followed by one is deleted before tokenizing.
fn drop_possessives(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['\'', '\u{2019}']) {
        return std::borrow::Cow::Borrowed(text);
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let possessive = matches!(chars[i], '\'' | '\u{2019}')
            && i > 0
            && is_token_char(chars[i - 1])
            && matches!(chars.get(i + 1), Some('s' | 'S'))
            && !chars.get(i + 2).is_some_and(|c| is_token_char(*c));
        if possessive {
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Lowercased runs of letters and digits, as `rare.text.tokenize`.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for_each_token(text, |token| out.push(token.to_string()));
    out
}

/// Calls `sink` with each token of [`tokenize`], without allocating one string per token.
pub fn for_each_token(text: &str, mut sink: impl FnMut(&str)) {
    let lower = text.to_lowercase();
    for_each_run(&lower, |s, e| sink(&lower[s..e]));
}

/// Calls `sink` with each token of the near-duplicate rule: the tokens of [`tokenize`], with
/// every CJK character (see [`cjk::is_cjk`]) a token of its own, since Chinese and Japanese
/// do not put spaces between words (`rare.text.shingle_tokens`).
pub fn for_each_shingle_token(text: &str, mut sink: impl FnMut(&str)) {
    let lower = text.to_lowercase();
    for_each_run(&lower, |s, e| {
        let run = &lower[s..e];
        if run.is_ascii() {
            return sink(run);
        }
        let mut other: Option<usize> = None;
        for (i, c) in run.char_indices() {
            if cjk::is_cjk(c) {
                if let Some(o) = other.take() {
                    sink(&run[o..i]);
                }
                sink(&run[i..i + c.len_utf8()]);
            } else if other.is_none() {
                other = Some(i);
            }
        }
        if let Some(o) = other {
            sink(&run[o..]);
        }
    });
}

pub fn is_stopword(token: &str) -> bool {
    LUCENE_ENGLISH_STOPWORDS.binary_search(&token).is_ok()
}

// -- the Lucene-like tokenizer: UAX #29 word boundaries, simplified -----------------------

/// Word-break classes of UAX #29 that decide where a word ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wb {
    Letter,
    Numeric,
    Katakana,
    ExtendNumLet,
    /// Han and Hiragana: every character is a token (Lucene's `<IDEOGRAPHIC>`).
    Ideographic,
    /// Extended_Pictographic (®, ★, 😀): every character is a token (Lucene's `<EMOJI>`).
    Emoji,
    MidLetter,
    MidNum,
    MidNumLet,
    SingleQuote,
    /// Combining marks and format characters: they stick to what precedes them (WB4).
    Extend,
    Other,
}

/// [`word_break_class`] of the ASCII characters.
const ASCII_WB: [Wb; 128] = {
    let mut table = [Wb::Other; 128];
    let mut i = 0;
    while i < 128 {
        table[i] = match i as u8 {
            b'a'..=b'z' | b'A'..=b'Z' => Wb::Letter,
            b'0'..=b'9' => Wb::Numeric,
            b'_' => Wb::ExtendNumLet,
            b':' => Wb::MidLetter,
            b',' | b';' => Wb::MidNum,
            b'.' => Wb::MidNumLet,
            b'\'' => Wb::SingleQuote,
            _ => Wb::Other,
        };
        i += 1;
    }
    table
};

#[inline]
fn word_break_class(c: char) -> Wb {
    match ASCII_WB.get(c as usize) {
        Some(class) => *class,
        None => non_ascii_word_break_class(c),
    }
}

fn non_ascii_word_break_class(c: char) -> Wb {
    match c {
        '\u{00B7}' | '\u{0387}' | '\u{05F4}' | '\u{2027}' | '\u{FE13}' | '\u{FE55}'
        | '\u{FF1A}' => return Wb::MidLetter,
        '\u{037E}' | '\u{0589}' | '\u{060C}' | '\u{060D}' | '\u{066C}' | '\u{07F8}'
        | '\u{2044}' | '\u{FE10}' | '\u{FE14}' | '\u{FE50}' | '\u{FE54}' | '\u{FF0C}'
        | '\u{FF1B}' => return Wb::MidNum,
        '\u{2018}' | '\u{2019}' | '\u{2024}' | '\u{FE52}' | '\u{FF07}' | '\u{FF0E}' => {
            return Wb::MidNumLet
        }
        // Zero width space; 〆, an ideograph outside the Han script.
        '\u{200B}' | '\u{3006}' => return Wb::Other,
        _ => {}
    }
    if cjk::is_emoji(c) {
        return Wb::Emoji;
    }
    if cjk::is_han(c) || cjk::is_hiragana(c) {
        return Wb::Ideographic;
    }
    if cjk::is_katakana(c) {
        return Wb::Katakana;
    }
    match c.general_category() {
        GeneralCategory::DecimalNumber => Wb::Numeric,
        GeneralCategory::ConnectorPunctuation => Wb::ExtendNumLet,
        GeneralCategory::NonspacingMark
        | GeneralCategory::SpacingMark
        | GeneralCategory::EnclosingMark
        | GeneralCategory::Format => Wb::Extend,
        GeneralCategory::LetterNumber => Wb::Letter,
        _ if c.general_category_group() == GeneralCategoryGroup::Letter => Wb::Letter,
        _ => Wb::Other,
    }
}

/// Whether two word characters in a row stay in one token (WB5, WB8-10, WB13, WB13a-b).
fn joins(prev: Wb, next: Wb) -> bool {
    use Wb::*;
    matches!(
        (prev, next),
        (Letter | Numeric, Letter | Numeric)
            | (Katakana, Katakana)
            | (ExtendNumLet, Letter | Numeric | Katakana | ExtendNumLet)
            | (Letter | Numeric | Katakana, ExtendNumLet)
    )
}

/// Whether `prev mid next` stays one token (WB6-7 for letters, WB11-12 for numbers).
fn joins_across(prev: Wb, mid: Wb, next: Wb) -> bool {
    use Wb::*;
    match (prev, next) {
        (Letter, Letter) => matches!(mid, MidLetter | MidNumLet | SingleQuote),
        (Numeric, Numeric) => matches!(mid, MidNum | MidNumLet | SingleQuote),
        _ => false,
    }
}

/// Whether a token holds a letter, digit or ideograph, not only connectors (`_`) and marks.
#[inline]
fn has_base(token: &str) -> bool {
    if token.is_ascii() {
        return token.bytes().any(|b| b != b'_');
    }
    token.chars().any(|c| {
        !matches!(
            word_break_class(c),
            Wb::ExtendNumLet | Wb::Extend | Wb::Other
        )
    })
}

/// Calls `sink(start, end)` for every word of `lower`, StandardTokenizer-style.
fn for_each_word(lower: &str, mut sink: impl FnMut(usize, usize)) {
    // Lucene cuts tokens at 255 characters (a token of at most 255 bytes never needs it).
    let mut emit = |start: usize, end: usize| {
        if !has_base(&lower[start..end]) {
            return; // only connectors (`___`): no word
        }
        if end - start <= LUCENE_MAX_TOKEN_CHARS {
            return sink(start, end);
        }
        let mut from = start;
        let mut count = 0;
        for (i, _) in lower[start..end].char_indices() {
            if count == LUCENE_MAX_TOKEN_CHARS {
                sink(from, start + i);
                from = start + i;
                count = 0;
            }
            count += 1;
        }
        sink(from, end);
    };
    // The current token: its first byte and the class of its last base character.
    let mut token: Option<(usize, Wb)> = None;
    let mut chars = lower.char_indices();
    while let Some((i, c)) = chars.next() {
        let class = word_break_class(c);
        match (class, token) {
            (Wb::Extend, Some(_)) => {}
            (Wb::Letter | Wb::Numeric | Wb::Katakana | Wb::ExtendNumLet, Some((s, prev))) => {
                if joins(prev, class) {
                    token = Some((s, class));
                } else {
                    emit(s, i);
                    token = Some((i, class));
                }
            }
            (Wb::Letter | Wb::Numeric | Wb::Katakana | Wb::ExtendNumLet, None) => {
                token = Some((i, class));
            }
            (Wb::Ideographic | Wb::Emoji, _) => {
                if let Some((s, _)) = token.take() {
                    emit(s, i);
                }
                emit(i, i + c.len_utf8());
            }
            (Wb::MidLetter | Wb::MidNum | Wb::MidNumLet | Wb::SingleQuote, Some((s, prev))) => {
                // Look past combining marks at the character after the separator.
                let mut ahead = chars.clone();
                let next = ahead
                    .by_ref()
                    .map(|(_, c)| word_break_class(c))
                    .find(|class| *class != Wb::Extend);
                match next {
                    Some(next) if joins_across(prev, class, next) => {
                        token = Some((s, next));
                        chars = ahead;
                    }
                    _ => {
                        emit(s, i);
                        token = None;
                    }
                }
            }
            (_, Some((s, _))) => {
                emit(s, i);
                token = None;
            }
            (_, None) => {}
        }
    }
    if let Some((s, _)) = token {
        emit(s, lower.len());
    }
}

/// Lucene's `LowerCaseFilter`: `Character.toLowerCase` code point by code point, so no
/// final sigma and `İ` becomes a plain `i` (its only multi-character full mapping).
fn lucene_lowercase(text: &str) -> String {
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
    text.chars().map(lucene_lowercase_char).collect()
}

/// [`lucene_lowercase`] of one character.
#[inline]
pub fn lucene_lowercase_char(c: char) -> char {
    match c {
        c if c.is_ascii() => c.to_ascii_lowercase(),
        '\u{130}' => 'i',
        c => c.to_lowercase().next().unwrap_or(c),
    }
}

/// Calls `sink(start, end)` for every word of the lowercased `lower`, as Lucene's
/// `StandardTokenizer` cuts words (each Han or Hiragana character is a word of its own).
pub fn for_each_lucene_word(lower: &str, sink: impl FnMut(usize, usize)) {
    for_each_word(lower, sink)
}

/// Lucene's `EnglishPossessiveFilter`: drop a trailing `'s` (any of its apostrophes).
fn strip_possessive(token: &str) -> &str {
    for suffix in ["'s", "\u{2019}s", "\u{FF07}s"] {
        if let Some(stem) = token.strip_suffix(suffix) {
            return stem;
        }
    }
    token
}

/// Lucene-style words of a text, lowercased, before possessives, stop words and stemming.
pub fn lucene_words(text: &str) -> Vec<String> {
    let lower = lucene_lowercase(text);
    let mut out = Vec::new();
    for_each_word(&lower, |s, e| out.push(lower[s..e].to_string()));
    out
}

// -- the analyzers as tantivy tokenizers ---------------------------------------------------

/// An analyzer as a tantivy tokenizer. Each indexing thread has its own clone, with a
/// [`TermCache`] (stemming is most of an English analysis's cost, and a corpus repeats its
/// words),
/// and reuses its tokens' buffers from one document to the next.
#[derive(Clone)]
pub struct AnalyzerTokenizer {
    analyzer: Analyzer,
    /// Reused from text to text; the current text's are the first ones.
    tokens: Vec<Token>,
    terms: TermCache,
}

impl AnalyzerTokenizer {
    pub fn new(analyzer: Analyzer) -> Self {
        AnalyzerTokenizer {
            analyzer,
            tokens: Vec::new(),
            terms: TermCache::new(),
        }
    }
}

/// Longest word (and term) a [`TermCache`] slot holds, in bytes.
const SLOT_BYTES: usize = 15;
/// Slots of a [`TermCache`]: 2^14 of 32 bytes, 512 KiB, well inside a core's L2 cache (the
/// best of the sizes measured on wiki205k: a bigger cache misses fewer words but each
/// lookup costs more).
const SLOT_COUNT: usize = 1 << 14;

/// A direct-mapped cache from a word to its term: each word hashes to one slot, and a word
/// that finds its slot taken by another replaces it. Frequent words stay (they come back
/// before anything evicts them), rare ones pass through, and a lookup costs one hash and at
/// most one cache miss. Words and terms are stored inline; longer ones are not cached.
#[derive(Clone)]
struct TermCache {
    slots: Vec<Slot>,
}

#[derive(Clone, Copy)]
struct Slot {
    /// 0: empty.
    word_len: u8,
    word: [u8; SLOT_BYTES],
    /// `NO_TERM`: the word has no term (a stop word).
    term_len: u8,
    term: [u8; SLOT_BYTES],
}

const NO_TERM: u8 = u8::MAX;

impl TermCache {
    fn new() -> Self {
        let empty = Slot {
            word_len: 0,
            word: [0; SLOT_BYTES],
            term_len: 0,
            term: [0; SLOT_BYTES],
        };
        TermCache {
            slots: vec![empty; SLOT_COUNT],
        }
    }

    /// Calls `sink` with the term of `word`, computing it on a miss.
    #[inline]
    fn with_term(&mut self, analyzer: Analyzer, word: &str, sink: impl FnOnce(&str)) {
        let bytes = word.as_bytes();
        if bytes.is_empty() || bytes.len() > SLOT_BYTES {
            if let Some(term) = analyzer.term(word) {
                sink(&term);
            }
            return;
        }
        // Zero-padded to the slot's width: fixed-size hashing and comparison.
        let mut key = [0u8; SLOT_BYTES];
        key[..bytes.len()].copy_from_slice(bytes);
        let hash = {
            use std::hash::BuildHasher;
            rustc_hash::FxBuildHasher.hash_one(key)
        };
        let slot = &mut self.slots[(hash as usize >> 7) % SLOT_COUNT];
        if usize::from(slot.word_len) == bytes.len() && slot.word == key {
            if slot.term_len != NO_TERM {
                // The slot was filled from a `&str` term, so this is valid UTF-8.
                if let Ok(term) = std::str::from_utf8(&slot.term[..usize::from(slot.term_len)]) {
                    sink(term);
                }
            }
            return;
        }
        let term = analyzer.term(word);
        match &term {
            Some(t) if t.len() > SLOT_BYTES => {}
            _ => {
                slot.word_len = bytes.len() as u8;
                slot.word = key;
                slot.term_len = term.as_ref().map_or(NO_TERM, |t| t.len() as u8);
                if let Some(t) = &term {
                    slot.term[..t.len()].copy_from_slice(t.as_bytes());
                }
            }
        }
        if let Some(term) = term {
            sink(&term);
        }
    }
}

pub struct VecTokenStream<'a> {
    tokens: &'a mut [Token],
    /// 1 + the index of the current token; 0 before the first `advance`.
    next: usize,
    /// Returned before the first `advance` or for an empty text (tantivy never asks then).
    none: Token,
}

impl Tokenizer for AnalyzerTokenizer {
    type TokenStream<'a> = VecTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream<'a> {
        let analyzer = self.analyzer;
        let (tokens, terms) = (&mut self.tokens, &mut self.terms);
        let mut len = 0;
        let mut push = |term: &str| {
            if len == tokens.len() {
                tokens.push(Token::default());
            }
            // BM25 needs neither offsets nor positions (the field indexes frequencies).
            let token = &mut tokens[len];
            token.text.clear();
            token.text.push_str(term);
            token.position = len;
            token.offset_from = 0;
            token.offset_to = 0;
            token.position_length = 1;
            len += 1;
        };
        if analyzer.is_english() {
            analyzer.for_each_word(text, |word| terms.with_term(analyzer, word, &mut push));
        } else {
            // A Chinese analyzer's words are its terms: nothing to cache.
            analyzer.for_each_word(text, &mut push);
        }
        VecTokenStream {
            tokens: &mut self.tokens[..len],
            next: 0,
            none: Token::default(),
        }
    }
}

impl TokenStream for VecTokenStream<'_> {
    fn advance(&mut self) -> bool {
        if self.next < self.tokens.len() {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn token(&self) -> &Token {
        match self.next.checked_sub(1) {
            Some(i) => self.tokens.get(i).unwrap_or(&self.none),
            None => &self.none,
        }
    }

    fn token_mut(&mut self) -> &mut Token {
        match self.next.checked_sub(1) {
            Some(i) if i < self.tokens.len() => &mut self.tokens[i],
            _ => &mut self.none,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopwords_are_sorted() {
        let mut sorted = LUCENE_ENGLISH_STOPWORDS;
        sorted.sort_unstable();
        assert_eq!(sorted, LUCENE_ENGLISH_STOPWORDS);
    }

    #[test]
    fn tokenize_like_python() {
        assert_eq!(
            tokenize("Hello, WORLD_42 naïve x2-y3 ΣΑΣ"),
            vec!["hello", "world", "42", "naïve", "x2", "y3", "σας"]
        );
        assert!(tokenize(" ,;_ ").is_empty());
    }

    #[test]
    fn rare_analyzer_drops_stopwords_and_stems_with_porter() {
        let rare = Analyzer::Rare;
        assert_eq!(
            rare.analyze("The connections are running generously"),
            vec!["connect", "run", "gener"]
        );
        // Porter and Snowball English disagree here: Porter keeps the 'i' of "-ly".
        assert_eq!(rare.analyze("fairly"), vec!["fairli"]);
        assert_eq!(rare.analyze("John's don't"), vec!["john", "don", "t"]);
        assert_eq!(
            rare.analyze("Smith's house, the cats\u{2019} s toys"),
            vec!["smith", "hous", "cat", "toi"]
        );
        assert_eq!(rare.analyze("it's x's's 's"), vec!["x"]);
    }

    #[test]
    fn lucene_words_follow_word_boundaries() {
        let words = lucene_words(
            "John's U.S.A. costs 3.14 or 1,000,000; don't e.g. snake_case wi-fi \
             東京 カタカナ x2 2x a.1 end.",
        );
        assert_eq!(
            words,
            vec![
                "john's",
                "u.s.a",
                "costs",
                "3.14",
                "or",
                "1,000,000",
                "don't",
                "e.g",
                "snake_case",
                "wi",
                "fi",
                "東",
                "京",
                "カタカナ",
                "x2",
                "2x",
                "a",
                "1",
                "end"
            ]
        );
        assert_eq!(lucene_words("...,;:'"), Vec::<String>::new());
        assert_eq!(lucene_words("café\u{301}s"), vec!["café\u{301}s"]);
        let long = "x".repeat(600);
        let cut = lucene_words(&long);
        assert_eq!(
            cut.iter().map(|w| w.len()).collect::<Vec<_>>(),
            vec![255, 255, 90]
        );
    }

    #[test]
    fn lucene_analyzer_drops_possessives() {
        let lucene = Analyzer::Lucene;
        assert_eq!(
            lucene.analyze("John's car isn't the company\u{2019}s"),
            vec!["john", "car", "isn't", "compani"]
        );
        assert_eq!(lucene.analyze("It's"), Vec::<String>::new());
    }

    #[test]
    fn tantivy_tokenizer_matches_analyze() {
        let text = "It was the best of times, the connections of Times' U.S. 3.5";
        for analyzer in Analyzer::ALL {
            let mut tok = AnalyzerTokenizer::new(analyzer);
            let mut stream = tok.token_stream(text);
            let mut got = Vec::new();
            while stream.advance() {
                got.push(stream.token().text.clone());
            }
            assert_eq!(got, analyzer.analyze(text));
        }
    }
}
