//! Chinese (and Japanese, Korean) text: scripts, width folding and the two zh analyzers.
//!
//! - [`for_each_cjk_term`] is the `cjk` analyzer, the tokens of Lucene's `CJKAnalyzer`: fold
//!   full-width ASCII to ASCII and half-width katakana to full-width (`CJKWidthCharFilter`),
//!   lowercase, then cut: a run of adjacent Han, Hiragana, Katakana or Hangul characters
//!   gives its overlapping bigrams (a run of one character is a unigram), every other word
//!   is a word as `StandardTokenizer` finds it; Lucene's CJK stop words are dropped.
//! - [`for_each_jieba_term`] is the `jieba` analyzer: the same, except that each CJK run is
//!   cut into words by jieba's precise mode with its HMM for unknown words (the `jieba-rs`
//!   crate), keeping the words that hold a letter or a digit.
//! - [`is_cjk`] decides which characters are CJK for both, for the near-duplicate rule
//!   (one shingle token per CJK character) and for the script mix `language="auto"` reads.
//!
//! `rare.text.cjk` implements the same analyzers in Python; tests compare them token by
//! token, and the `cjk` analyzer against Lucene's own `CJKAnalyzer` (through Pyserini).

use std::sync::OnceLock;

use jieba_rs::Jieba;

use crate::analysis::{for_each_lucene_word, is_token_char, lucene_lowercase_char};

/// `CJKAnalyzer`'s default stop words (checked against Lucene): Lucene's English stop
/// words without "an", plus "s", "t" and "www", sorted for binary search.
pub const CJK_STOPWORDS: [&str; 35] = [
    "a", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no",
    "not", "of", "on", "or", "s", "such", "t", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with", "www",
];

pub fn is_cjk_stopword(token: &str) -> bool {
    CJK_STOPWORDS.binary_search(&token).is_ok()
}

/// Han as `StandardTokenizer` and `CJKBigramFilter` take it (checked against Lucene): the
/// ideographs, their extensions and compatibility forms, 〇, 〡-〩 and 〸-〺. Not the
/// iteration mark 々 (a letter there) nor the radicals.
#[inline]
pub fn is_han(c: char) -> bool {
    matches!(c,
        '\u{3007}' | '\u{3021}'..='\u{3029}' | '\u{3038}'..='\u{303A}'
        | '\u{3400}'..='\u{4DBF}'
        | '\u{4E00}'..='\u{9FFF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{3FFFF}')
}

/// Extended_Pictographic: what `StandardTokenizer` makes a token of its own (`<EMOJI>`).
pub fn is_emoji(c: char) -> bool {
    matches!(c,
        '\u{A9}' | '\u{AE}' | '\u{203C}' | '\u{2049}' | '\u{2122}' | '\u{2139}'
        | '\u{2194}'..='\u{2199}' | '\u{21A9}'..='\u{21AA}' | '\u{231A}'..='\u{231B}'
        | '\u{2328}' | '\u{2388}' | '\u{23CF}' | '\u{23E9}'..='\u{23F3}'
        | '\u{23F8}'..='\u{23FA}' | '\u{24C2}' | '\u{25AA}'..='\u{25AB}' | '\u{25B6}'
        | '\u{25C0}' | '\u{25FB}'..='\u{25FE}' | '\u{2600}'..='\u{2605}'
        | '\u{2607}'..='\u{2612}' | '\u{2614}'..='\u{2685}' | '\u{2690}'..='\u{2705}'
        | '\u{2708}'..='\u{2712}' | '\u{2714}' | '\u{2716}' | '\u{271D}' | '\u{2721}'
        | '\u{2728}' | '\u{2733}'..='\u{2734}' | '\u{2744}' | '\u{2747}' | '\u{274C}'
        | '\u{274E}' | '\u{2753}'..='\u{2755}' | '\u{2757}' | '\u{2763}'..='\u{2767}'
        | '\u{2795}'..='\u{2797}' | '\u{27A1}' | '\u{27B0}' | '\u{27BF}'
        | '\u{2934}'..='\u{2935}' | '\u{2B05}'..='\u{2B07}' | '\u{2B1B}'..='\u{2B1C}'
        | '\u{2B50}' | '\u{2B55}' | '\u{3030}' | '\u{303D}' | '\u{3297}' | '\u{3299}'
        | '\u{1F000}'..='\u{1F0FF}' | '\u{1F10D}'..='\u{1F10F}' | '\u{1F12F}'
        | '\u{1F16C}'..='\u{1F171}' | '\u{1F17E}'..='\u{1F17F}' | '\u{1F18E}'
        | '\u{1F191}'..='\u{1F19A}' | '\u{1F1AD}'..='\u{1F1E5}' | '\u{1F201}'..='\u{1F20F}'
        | '\u{1F21A}' | '\u{1F22F}' | '\u{1F232}'..='\u{1F23A}' | '\u{1F23C}'..='\u{1F23F}'
        | '\u{1F249}'..='\u{1F3FA}' | '\u{1F400}'..='\u{1F53D}' | '\u{1F546}'..='\u{1F64F}'
        | '\u{1F680}'..='\u{1F6FF}' | '\u{1F774}'..='\u{1F77F}' | '\u{1F7D5}'..='\u{1F7FF}'
        | '\u{1F80C}'..='\u{1F80F}' | '\u{1F848}'..='\u{1F84F}' | '\u{1F85A}'..='\u{1F85F}'
        | '\u{1F888}'..='\u{1F88F}' | '\u{1F8AE}'..='\u{1F8FF}' | '\u{1F90C}'..='\u{1F93A}'
        | '\u{1F93C}'..='\u{1F945}' | '\u{1F947}'..='\u{1FAFF}' | '\u{1FC00}'..='\u{1FFFD}')
}

#[inline]
pub fn is_hiragana(c: char) -> bool {
    matches!(c, '\u{3041}'..='\u{3096}' | '\u{309D}'..='\u{309F}')
}

/// Word_Break=Katakana: the katakana, their phonetic extensions, 〱-〵, ゛゜, ー and the
/// half-width forms.
#[inline]
pub fn is_katakana(c: char) -> bool {
    matches!(c,
        '\u{3031}'..='\u{3035}'
        | '\u{309B}'..='\u{309C}'
        | '\u{30A0}'..='\u{30FA}'
        | '\u{30FC}'..='\u{30FF}'
        | '\u{31F0}'..='\u{31FF}'
        | '\u{32D0}'..='\u{32FE}'
        | '\u{3300}'..='\u{3357}'
        | '\u{FF66}'..='\u{FF9D}')
}

/// Hangul syllables and jamo.
#[inline]
pub fn is_hangul(c: char) -> bool {
    matches!(c,
        '\u{1100}'..='\u{11FF}'
        | '\u{3131}'..='\u{318E}'
        | '\u{A960}'..='\u{A97F}'
        | '\u{AC00}'..='\u{D7A3}'
        | '\u{D7B0}'..='\u{D7FF}')
}

/// A character the CJK bigrams (and CJK shingles) are made of.
#[inline]
pub fn is_cjk(c: char) -> bool {
    !c.is_ascii() && (is_han(c) || is_hiragana(c) || is_katakana(c) || is_hangul(c))
}

// -- width folding -------------------------------------------------------------------------

/// Full-width katakana of the half-width forms U+FF65..=U+FF9F (the last two are the
/// combining voiced and semi-voiced sound marks).
const HALF_KANA: [char; 59] = [
    '・', 'ヲ', 'ァ', 'ィ', 'ゥ', 'ェ', 'ォ', 'ャ', 'ュ', 'ョ', 'ッ', 'ー', 'ア', 'イ', 'ウ', 'エ',
    'オ', 'カ', 'キ', 'ク', 'ケ', 'コ', 'サ', 'シ', 'ス', 'セ', 'ソ', 'タ', 'チ', 'ツ', 'テ', 'ト',
    'ナ', 'ニ', 'ヌ', 'ネ', 'ノ', 'ハ', 'ヒ', 'フ', 'ヘ', 'ホ', 'マ', 'ミ', 'ム', 'メ', 'モ', 'ヤ',
    'ユ', 'ヨ', 'ラ', 'リ', 'ル', 'レ', 'ロ', 'ワ', 'ン', '\u{3099}', '\u{309A}',
];

/// The voiced form of a katakana (ガ for カ), as a half-width ﾞ after it makes it.
fn voiced(c: char) -> Option<char> {
    let code = c as u32;
    let target = match code {
        0x30A6 => 0x30F4,                                                 // ウ -> ヴ
        0x30AB..=0x30C2 if (code - 0x30AB).is_multiple_of(2) => code + 1, // カ..チ
        0x30C4 | 0x30C6 | 0x30C8 => code + 1,                             // ツ テ ト
        0x30CF..=0x30DD if (code - 0x30CF).is_multiple_of(3) => code + 1, // ハ ヒ フ ヘ ホ
        0x30EF..=0x30F2 => code + 8,                                      // ワ ヰ ヱ ヲ -> ヷ..ヺ
        0x30FD => 0x30FE,                                                 // ヽ -> ヾ
        _ => return None,
    };
    char::from_u32(target)
}

/// The semi-voiced form (パ for ハ), as a half-width ﾟ after it makes it.
fn semi_voiced(c: char) -> Option<char> {
    let code = c as u32;
    match code {
        0x30CF..=0x30DD if (code - 0x30CF).is_multiple_of(3) => char::from_u32(code + 2),
        _ => None,
    }
}

/// `CJKWidthCharFilter` then Lucene's `LowerCaseFilter`: full-width ASCII (U+FF01..=U+FF5E)
/// becomes ASCII, half-width katakana full-width (a half-width voiced or semi-voiced mark
/// joins the katakana before it when that has such a form), and every character is
/// lowercased on its own.
pub fn fold_width_lower(text: &str) -> String {
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(text.len());
    let mut last: Option<char> = None;
    for c in text.chars() {
        let folded = match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{FF9E}' | '\u{FF9F}' => {
                let mark = if c == '\u{FF9E}' { voiced } else { semi_voiced };
                if let Some(joined) = last.and_then(mark) {
                    out.pop();
                    out.push(joined);
                    last = Some(joined);
                    continue;
                }
                HALF_KANA[(c as u32 - 0xFF65) as usize]
            }
            '\u{FF65}'..='\u{FF9D}' => HALF_KANA[(c as u32 - 0xFF65) as usize],
            _ => c,
        };
        let folded = lucene_lowercase_char(folded);
        out.push(folded);
        last = Some(folded);
    }
    out
}

// -- the cjk analyzer ----------------------------------------------------------------------

/// The non-stop-word words of a stretch of text without CJK characters.
fn cjk_words(segment: &str, sink: &mut impl FnMut(&str)) {
    for_each_lucene_word(segment, |s, e| {
        let word = &segment[s..e];
        if !is_cjk_stopword(word) {
            sink(word);
        }
    });
}

/// A piece of folded text: a maximal run of CJK characters, or the text between two runs.
enum Piece<'a> {
    Run(&'a str),
    Other(&'a str),
}

/// Calls `on` with the CJK runs of `folded` and the stretches between them, in order.
fn for_each_piece<'a>(folded: &'a str, mut on: impl FnMut(Piece<'a>)) {
    let mut other = 0; // where the current stretch of non-CJK text began
    let mut run: Option<usize> = None;
    for (i, c) in folded.char_indices() {
        match (is_cjk(c), run) {
            (true, None) => {
                if other < i {
                    on(Piece::Other(&folded[other..i]));
                }
                run = Some(i);
            }
            (false, Some(start)) => {
                on(Piece::Run(&folded[start..i]));
                run = None;
                other = i;
            }
            _ => {}
        }
    }
    match run {
        Some(start) => on(Piece::Run(&folded[start..])),
        None if other < folded.len() => on(Piece::Other(&folded[other..])),
        None => {}
    }
}

/// Calls `sink` with every term of the `cjk` analyzer (see the module docs).
pub fn for_each_cjk_term(text: &str, mut sink: impl FnMut(&str)) {
    let folded = fold_width_lower(text);
    for_each_piece(&folded, |piece| match piece {
        Piece::Other(segment) => cjk_words(segment, &mut sink),
        Piece::Run(run) => {
            // Overlapping bigrams, each a slice of the run; one character is a unigram.
            let mut starts = run.char_indices().map(|(i, _)| i).skip(1).peekable();
            if starts.peek().is_none() {
                return sink(run);
            }
            let mut prev = 0;
            while let Some(start) = starts.next() {
                let end = starts.peek().map_or(run.len(), |next| *next);
                sink(&run[prev..end]);
                prev = start;
            }
        }
    });
}

// -- the jieba analyzer --------------------------------------------------------------------

/// jieba's segmenter with its default dictionary, loaded once per process (~0.2 s).
pub fn jieba() -> &'static Jieba {
    static JIEBA: OnceLock<Jieba> = OnceLock::new();
    JIEBA.get_or_init(Jieba::new)
}

/// Calls `sink` with every term of the `jieba` analyzer: the `cjk` analyzer with each CJK
/// run cut into jieba's words (precise mode, HMM) instead of bigrams. Text outside CJK
/// runs is cut into words as the `cjk` analyzer cuts it, not by jieba: jieba-rs and
/// Python's jieba disagree there (`2.4km`, `1-2`), and these are the words English
/// queries need.
pub fn for_each_jieba_term(text: &str, mut sink: impl FnMut(&str)) {
    let folded = fold_width_lower(text);
    let jieba = jieba();
    for_each_piece(&folded, |piece| match piece {
        Piece::Other(segment) => cjk_words(segment, &mut sink),
        Piece::Run(run) => {
            for token in jieba.cut(run, true) {
                if token.word.chars().any(is_token_char) {
                    sink(token.word);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cjk_terms(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for_each_cjk_term(text, |t| out.push(t.to_string()));
        out
    }

    fn jieba_terms(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for_each_jieba_term(text, |t| out.push(t.to_string()));
        out
    }

    #[test]
    fn stopwords_are_sorted() {
        let mut sorted = CJK_STOPWORDS;
        sorted.sort_unstable();
        assert_eq!(sorted, CJK_STOPWORDS);
    }

    #[test]
    fn bigrams_over_runs_words_elsewhere() {
        assert_eq!(cjk_terms("中华人民"), ["中华", "华人", "人民"]);
        // a lone character stays a unigram; punctuation and spaces end a run
        assert_eq!(cjk_terms("我，你 他们"), ["我", "你", "他们"]);
        // English words kept (lowercased, stop words dropped, no stemming), numbers too
        assert_eq!(
            cjk_terms("使用Python的 the Running 3.14 和2018年"),
            ["使用", "python", "的", "running", "3.14", "和", "2018", "年"]
        );
        // Traditional characters, kana and hangul are CJK too
        assert_eq!(cjk_terms("臺灣"), ["臺灣"]);
        assert_eq!(cjk_terms("カタカナ"), ["カタ", "タカ", "カナ"]);
        assert_eq!(cjk_terms("한국어"), ["한국", "국어"]);
        assert_eq!(cjk_terms("www s t it"), Vec::<String>::new());
    }

    #[test]
    fn width_folding() {
        // full-width ASCII becomes ASCII, then lowercase
        assert_eq!(cjk_terms("ＡＢＣ１２３"), ["abc123"]);
        // half-width katakana becomes full-width, voiced marks join
        assert_eq!(fold_width_lower("ｶﾞｷﾞﾊﾟｱﾞ"), "ガギパア\u{3099}");
        assert_eq!(fold_width_lower("ﾞｳﾞ"), "\u{3099}ヴ");
    }

    #[test]
    fn jieba_segments_words() {
        let terms = jieba_terms("我来到北京清华大学，学习Rust。");
        assert_eq!(terms, ["我", "来到", "北京", "清华大学", "学习", "rust"]);
    }
}
