//! The Porter stemmer as Lucene's `PorterStemmer` runs it.
//!
//! Lucene ports Martin Porter's reference C code, which departs from the 1980 paper (and so
//! from Snowball's `porter`, which follows the paper) in three places: words of one or two
//! characters are left alone, step 2 maps `-bli` to `-ble` (the paper: `-abli` to `-able`)
//! and step 2 maps `-logi` to `-log`. This module implements that version so the "lucene"
//! analyzer stems as Lucene does; the "rare" analyzer keeps Snowball's (PyStemmer's) Porter.
//! Characters are Unicode scalar values; anything but `aeiou` (and `y` after a consonant)
//! counts as a consonant, as in Lucene.

struct Word {
    b: Vec<char>,
    /// Index of the last character of the current word.
    k: usize,
    /// End of the stem (inclusive) set by the last successful `ends`, or usize::MAX for none.
    j: isize,
}

impl Word {
    fn cons(&self, i: usize) -> bool {
        match self.b[i] {
            'a' | 'e' | 'i' | 'o' | 'u' => false,
            'y' => i == 0 || !self.cons(i - 1),
            _ => true,
        }
    }

    /// The first index from `i` on, up to `j`, whose letter is a consonant (`consonant`) or a
    /// vowel (`!consonant`); None past `j`.
    fn skip_to(&self, mut i: isize, consonant: bool) -> Option<isize> {
        while i <= self.j {
            if self.cons(i as usize) == consonant {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    /// The number of vowel-consonant sequences in `b[0..=j]`: [C](VC)^m[V].
    fn m(&self) -> usize {
        let mut n = 0;
        let Some(mut i) = self.skip_to(0, false) else {
            return n;
        };
        loop {
            let Some(c) = self.skip_to(i + 1, true) else {
                return n;
            };
            n += 1;
            let Some(v) = self.skip_to(c + 1, false) else {
                return n;
            };
            i = v;
        }
    }

    fn vowel_in_stem(&self) -> bool {
        (0..=self.j).any(|i| !self.cons(i as usize))
    }

    fn double_c(&self, j: usize) -> bool {
        j >= 1 && self.b[j] == self.b[j - 1] && self.cons(j)
    }

    /// consonant-vowel-consonant ending at `i`, the last consonant not w, x or y.
    fn cvc(&self, i: usize) -> bool {
        if i < 2 || !self.cons(i) || self.cons(i - 1) || !self.cons(i - 2) {
            return false;
        }
        !matches!(self.b[i], 'w' | 'x' | 'y')
    }

    fn ends(&mut self, s: &str) -> bool {
        let len = s.chars().count();
        if len > self.k + 1 {
            return false;
        }
        let start = self.k + 1 - len;
        if !self.b[start..=self.k].iter().copied().eq(s.chars()) {
            return false;
        }
        self.j = start as isize - 1;
        true
    }

    /// Replace `b[j+1..=k]` by `s`.
    fn set_to(&mut self, s: &str) {
        let start = (self.j + 1) as usize;
        self.b.truncate(start);
        self.b.extend(s.chars());
        self.k = self.b.len() - 1;
    }

    fn r(&mut self, s: &str) {
        if self.m() > 0 {
            self.set_to(s);
        }
    }

    fn truncate_to(&mut self, k: usize) {
        self.k = k;
        self.b.truncate(k + 1);
    }

    /// Plurals and -ed / -ing.
    fn step1ab(&mut self) {
        if self.b[self.k] == 's' {
            if self.ends("sses") {
                self.truncate_to(self.k - 2);
            } else if self.ends("ies") {
                self.set_to("i");
            } else if self.k >= 1 && self.b[self.k - 1] != 's' {
                self.truncate_to(self.k - 1);
            }
        }
        if self.ends("eed") {
            if self.m() > 0 {
                self.truncate_to(self.k - 1);
            }
        } else if (self.ends("ed") || self.ends("ing")) && self.vowel_in_stem() {
            self.truncate_to(self.j as usize);
            if self.ends("at") {
                self.set_to("ate");
            } else if self.ends("bl") {
                self.set_to("ble");
            } else if self.ends("iz") {
                self.set_to("ize");
            } else if self.double_c(self.k) {
                if !matches!(self.b[self.k], 'l' | 's' | 'z') {
                    self.truncate_to(self.k - 1);
                }
            } else {
                self.j = self.k as isize;
                if self.m() == 1 && self.cvc(self.k) {
                    self.b.push('e');
                    self.k += 1;
                }
            }
        }
    }

    /// Terminal y to i when there is another vowel in the stem.
    fn step1c(&mut self) {
        if self.ends("y") && self.vowel_in_stem() {
            self.b[self.k] = 'i';
        }
    }

    /// The first matching suffix of `rules` (tried in order) is replaced when m() > 0.
    fn replace_first(&mut self, rules: &[(&str, &str)]) {
        for (suffix, by) in rules {
            if self.ends(suffix) {
                self.r(by);
                return;
            }
        }
    }

    fn step2(&mut self) {
        if self.k == 0 {
            return;
        }
        let rules: &[(&str, &str)] = match self.b[self.k - 1] {
            'a' => &[("ational", "ate"), ("tional", "tion")],
            'c' => &[("enci", "ence"), ("anci", "ance")],
            'e' => &[("izer", "ize")],
            'l' => &[
                ("bli", "ble"),
                ("alli", "al"),
                ("entli", "ent"),
                ("eli", "e"),
                ("ousli", "ous"),
            ],
            'o' => &[("ization", "ize"), ("ation", "ate"), ("ator", "ate")],
            's' => &[
                ("alism", "al"),
                ("iveness", "ive"),
                ("fulness", "ful"),
                ("ousness", "ous"),
            ],
            't' => &[("aliti", "al"), ("iviti", "ive"), ("biliti", "ble")],
            'g' => &[("logi", "log")],
            _ => return,
        };
        self.replace_first(rules);
    }

    fn step3(&mut self) {
        let rules: &[(&str, &str)] = match self.b[self.k] {
            'e' => &[("icate", "ic"), ("ative", ""), ("alize", "al")],
            'i' => &[("iciti", "ic")],
            'l' => &[("ical", "ic"), ("ful", "")],
            's' => &[("ness", "")],
            _ => return,
        };
        self.replace_first(rules);
    }

    /// -ant, -ence etc. go when m() > 1.
    fn step4(&mut self) {
        if self.k == 0 {
            return;
        }
        let suffixes: &[&str] = match self.b[self.k - 1] {
            'a' => &["al"],
            'c' => &["ance", "ence"],
            'e' => &["er"],
            'i' => &["ic"],
            'l' => &["able", "ible"],
            'n' => &["ant", "ement", "ment", "ent"],
            'o' => {
                let ion =
                    self.ends("ion") && self.j >= 0 && matches!(self.b[self.j as usize], 's' | 't');
                if ion || self.ends("ou") {
                    self.remove_if_m_gt_1();
                }
                return;
            }
            's' => &["ism"],
            't' => &["ate", "iti"],
            'u' => &["ous"],
            'v' => &["ive"],
            'z' => &["ize"],
            _ => return,
        };
        if suffixes.iter().any(|s| self.ends(s)) {
            self.remove_if_m_gt_1();
        }
    }

    fn remove_if_m_gt_1(&mut self) {
        if self.m() > 1 && self.j >= 0 {
            self.truncate_to(self.j as usize);
        }
    }

    /// A final -e goes when m() > 1 (or m() == 1 and not *o); -ll to -l when m() > 1.
    fn step5(&mut self) {
        self.j = self.k as isize;
        if self.b[self.k] == 'e' {
            let a = self.m();
            if a > 1 || (a == 1 && !self.cvc(self.k - 1)) {
                self.truncate_to(self.k - 1);
            }
        }
        self.j = self.k as isize;
        if self.b[self.k] == 'l' && self.double_c(self.k) && self.m() > 1 {
            self.truncate_to(self.k - 1);
        }
    }
}

/// Stem one lowercase word as Lucene's `PorterStemmer` does.
pub fn stem(word: &str) -> String {
    let b: Vec<char> = word.chars().collect();
    if b.len() <= 2 {
        return word.to_string();
    }
    let k = b.len() - 1;
    let mut w = Word { b, k, j: -1 };
    w.step1ab();
    if w.k > 0 {
        w.step1c();
        w.step2();
        w.step3();
        w.step4();
        w.step5();
    }
    w.b.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::stem;

    #[test]
    fn porters_examples() {
        let cases = [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("ties", "ti"),
            ("caress", "caress"),
            ("cats", "cat"),
            ("feed", "feed"),
            ("agreed", "agre"),
            ("plastered", "plaster"),
            ("bled", "bled"),
            ("motoring", "motor"),
            ("sing", "sing"),
            ("conflated", "conflat"),
            ("troubled", "troubl"),
            ("sized", "size"),
            ("hopping", "hop"),
            ("tanned", "tan"),
            ("falling", "fall"),
            ("hissing", "hiss"),
            ("fizzed", "fizz"),
            ("failing", "fail"),
            ("filing", "file"),
            ("happy", "happi"),
            ("sky", "sky"),
            ("relational", "relat"),
            ("conditional", "condit"),
            ("rational", "ration"),
            ("valenci", "valenc"),
            ("digitizer", "digit"),
            ("radicalli", "radic"),
            ("differentli", "differ"),
            ("vileli", "vile"),
            ("analogousli", "analog"),
            ("vietnamization", "vietnam"),
            ("predication", "predic"),
            ("operator", "oper"),
            ("feudalism", "feudal"),
            ("decisiveness", "decis"),
            ("hopefulness", "hope"),
            ("callousness", "callous"),
            ("formaliti", "formal"),
            ("sensitiviti", "sensit"),
            ("sensibiliti", "sensibl"),
            ("triplicate", "triplic"),
            ("formative", "form"),
            ("formalize", "formal"),
            ("electriciti", "electr"),
            ("electrical", "electr"),
            ("hopeful", "hope"),
            ("goodness", "good"),
            ("revival", "reviv"),
            ("allowance", "allow"),
            ("inference", "infer"),
            ("airliner", "airlin"),
            ("gyroscopic", "gyroscop"),
            ("adjustable", "adjust"),
            ("defensible", "defens"),
            ("irritant", "irrit"),
            ("replacement", "replac"),
            ("adjustment", "adjust"),
            ("dependent", "depend"),
            ("adoption", "adopt"),
            ("homologou", "homolog"),
            ("communism", "commun"),
            ("activate", "activ"),
            ("angulariti", "angular"),
            ("homologous", "homolog"),
            ("effective", "effect"),
            ("bowdlerize", "bowdler"),
            ("probate", "probat"),
            ("rate", "rate"),
            ("cease", "ceas"),
            ("controll", "control"),
            ("roll", "roll"),
            ("generalizations", "gener"),
            ("oscillators", "oscil"),
        ];
        for (word, want) in cases {
            assert_eq!(stem(word), want, "{word}");
        }
    }

    #[test]
    fn lucenes_departures_from_the_paper() {
        // Short words stay; -bli and -logi are rewritten (Snowball's porter does neither).
        assert_eq!(stem("s"), "s");
        assert_eq!(stem("us"), "us");
        assert_eq!(stem("technology"), "technolog");
        assert_eq!(stem("assembly"), "assembl");
        assert_eq!(stem("possibly"), "possibl");
        assert_eq!(stem("incredibly"), "incred");
        assert_eq!(stem("naïve"), "naïv");
        assert_eq!(stem("3.14"), "3.14");
    }
}
