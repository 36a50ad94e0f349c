//! English analyzers: lowercase, tokenize, drop Lucene's 33 stop words, Porter-stem.
//!
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

use frostem::{Algorithm, Stemmer};

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Analyzer {
    Lucene,
    Rare,
}

impl Analyzer {
    pub const ALL: [Analyzer; 2] = [Analyzer::Lucene, Analyzer::Rare];

    pub fn name(self) -> &'static str {
        match self {
            Analyzer::Lucene => "lucene",
            Analyzer::Rare => "rare",
        }
    }

    pub fn from_name(name: &str) -> Option<Analyzer> {
        Analyzer::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The name the analyzer is registered under in a tantivy index (versioned: an index
    /// built with another version of an analyzer is refused).
    pub fn tokenizer_name(self) -> &'static str {
        match self {
            Analyzer::Lucene => "rare_en_lucene_porter_v1",
            Analyzer::Rare => "rare_en_porter_v1",
        }
    }

    pub fn from_tokenizer_name(name: &str) -> Option<Analyzer> {
        Analyzer::ALL
            .into_iter()
            .find(|a| a.tokenizer_name() == name)
    }

    /// Calls `sink(term)` for every indexed term of `text`.
    pub fn for_each_term(self, text: &str, mut sink: impl FnMut(String)) {
        match self {
            Analyzer::Rare => {
                let stemmer = Stemmer::new(Algorithm::Porter);
                let lower = drop_possessives(text).to_lowercase();
                for_each_run(&lower, |s, e| {
                    let token = &lower[s..e];
                    if !is_stopword(token) {
                        // Snowball's Porter stems a lone "s" to "": rare drops empty terms.
                        let term = stemmer.stem(token);
                        if !term.is_empty() {
                            sink(term.into_owned());
                        }
                    }
                });
            }
            Analyzer::Lucene => {
                let lower = lucene_lowercase(text);
                for_each_word(&lower, |s, e| {
                    let token = strip_possessive(&lower[s..e]);
                    if !token.is_empty() && !is_stopword(token) {
                        sink(porter::stem(token));
                    }
                });
            }
        }
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
    let lower = text.to_lowercase();
    let mut out = Vec::new();
    for_each_run(&lower, |s, e| out.push(lower[s..e].to_string()));
    out
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
    MidLetter,
    MidNum,
    MidNumLet,
    SingleQuote,
    /// Combining marks and format characters: they stick to what precedes them (WB4).
    Extend,
    Other,
}

fn word_break_class(c: char) -> Wb {
    if c.is_ascii() {
        return match c {
            'a'..='z' | 'A'..='Z' => Wb::Letter,
            '0'..='9' => Wb::Numeric,
            '_' => Wb::ExtendNumLet,
            ':' => Wb::MidLetter,
            ',' | ';' => Wb::MidNum,
            '.' => Wb::MidNumLet,
            '\'' => Wb::SingleQuote,
            _ => Wb::Other,
        };
    }
    match c {
        '\u{00B7}' | '\u{0387}' | '\u{05F4}' | '\u{2027}' | '\u{FE13}' | '\u{FE55}'
        | '\u{FF1A}' => return Wb::MidLetter,
        '\u{037E}' | '\u{0589}' | '\u{060C}' | '\u{060D}' | '\u{066C}' | '\u{07F8}'
        | '\u{2044}' | '\u{FE10}' | '\u{FE14}' | '\u{FE50}' | '\u{FE54}' | '\u{FF0C}'
        | '\u{FF1B}' => return Wb::MidNum,
        '\u{2018}' | '\u{2019}' | '\u{2024}' | '\u{FE52}' | '\u{FF07}' | '\u{FF0E}' => {
            return Wb::MidNumLet
        }
        '\u{3040}'..='\u{309F}'
        | '\u{3400}'..='\u{4DBF}'
        | '\u{4E00}'..='\u{9FFF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{3FFFF}' => return Wb::Ideographic,
        '\u{30A0}'..='\u{30FF}' | '\u{31F0}'..='\u{31FF}' | '\u{FF66}'..='\u{FF9F}' => {
            return Wb::Katakana
        }
        _ => {}
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

/// Calls `sink(start, end)` for every word of `lower`, StandardTokenizer-style.
fn for_each_word(lower: &str, mut sink: impl FnMut(usize, usize)) {
    let chars: Vec<(usize, char, Wb)> = lower
        .char_indices()
        .map(|(i, c)| (i, c, word_break_class(c)))
        .collect();
    let end_of = |j: usize| chars.get(j).map_or(lower.len(), |&(i, _, _)| i);
    // Lucene cuts tokens at 255 characters.
    let mut emit = |start: usize, end: usize| {
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
    let mut token: Option<(usize, Wb)> = None; // (start index in chars, class of last base char)
    let mut j = 0;
    while j < chars.len() {
        let class = chars[j].2;
        match (class, token) {
            (Wb::Extend, Some(_)) => {}
            (Wb::Letter | Wb::Numeric | Wb::Katakana | Wb::ExtendNumLet, Some((s, prev))) => {
                if joins(prev, class) {
                    token = Some((s, class));
                } else {
                    emit(chars[s].0, end_of(j));
                    token = Some((j, class));
                }
            }
            (Wb::Letter | Wb::Numeric | Wb::Katakana | Wb::ExtendNumLet, None) => {
                token = Some((j, class));
            }
            (Wb::Ideographic, _) => {
                if let Some((s, _)) = token.take() {
                    emit(chars[s].0, end_of(j));
                }
                emit(chars[j].0, end_of(j + 1));
            }
            (Wb::MidLetter | Wb::MidNum | Wb::MidNumLet | Wb::SingleQuote, Some((s, prev))) => {
                let mut k = j + 1;
                while k < chars.len() && chars[k].2 == Wb::Extend {
                    k += 1;
                }
                match chars.get(k) {
                    Some(&(_, _, next)) if joins_across(prev, class, next) => {
                        token = Some((s, next));
                        j = k;
                    }
                    _ => {
                        emit(chars[s].0, end_of(j));
                        token = None;
                    }
                }
            }
            (_, Some((s, _))) => {
                emit(chars[s].0, end_of(j));
                token = None;
            }
            (_, None) => {}
        }
        j += 1;
    }
    if let Some((s, _)) = token {
        emit(chars[s].0, lower.len());
    }
}

/// Lucene's `LowerCaseFilter`: `Character.toLowerCase` code point by code point, so no
/// final sigma and `İ` becomes a plain `i` (its only multi-character full mapping).
fn lucene_lowercase(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{130}' => 'i',
            c => c.to_lowercase().next().unwrap_or(c),
        })
        .collect()
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

#[derive(Clone)]
pub struct EnglishTokenizer {
    analyzer: Analyzer,
    tokens: Vec<Token>,
}

impl EnglishTokenizer {
    pub fn new(analyzer: Analyzer) -> Self {
        EnglishTokenizer {
            analyzer,
            tokens: Vec::new(),
        }
    }
}

pub struct VecTokenStream<'a> {
    tokens: &'a mut Vec<Token>,
    /// 1 + the index of the current token; 0 before the first `advance`.
    next: usize,
    /// Returned before the first `advance` or for an empty text (tantivy never asks then).
    none: Token,
}

impl Tokenizer for EnglishTokenizer {
    type TokenStream<'a> = VecTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream<'a> {
        self.tokens.clear();
        let tokens = &mut self.tokens;
        // BM25 needs neither offsets nor positions (the field indexes frequencies only).
        self.analyzer.for_each_term(text, |term| {
            let position = tokens.len();
            tokens.push(Token {
                offset_from: 0,
                offset_to: 0,
                position,
                text: term,
                position_length: 1,
            })
        });
        VecTokenStream {
            tokens: &mut self.tokens,
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
            let mut tok = EnglishTokenizer::new(analyzer);
            let mut stream = tok.token_stream(text);
            let mut got = Vec::new();
            while stream.advance() {
                got.push(stream.token().text.clone());
            }
            assert_eq!(got, analyzer.analyze(text));
        }
    }
}
