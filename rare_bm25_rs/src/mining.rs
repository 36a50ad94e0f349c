//! Which of a query's ranked hits become its hard negatives.
//!
//! The rules are those of `rare.retriever` (the Python base path), bit for bit, so every
//! backend mines the same negatives at equal settings:
//!
//! 1. Hits are walked best first. The positive (same id) is skipped.
//! 2. A hit scoring above the margin's bound (see [`Margin::bound`]) is skipped.
//! 3. Every other hit is a *candidate* and gets the next rank (0, 1, 2, ...). Candidates
//!    ranked below `start_rank` are skipped ("outside the window"); the walk stops at rank
//!    `end_rank` (when set).
//! 4. `Sampling::Top` takes the window's candidates in rank order, `Sampling::Random` in
//!    the order of a partial Fisher-Yates shuffle of all of them driven by
//!    [`SplitMix64::for_query`]. Each candidate taken is checked against the positive's
//!    text by the near-duplicate rule: a near-duplicate is skipped and the next one is
//!    taken, until `num_neg` are kept or the window runs out.
//!
//! Only the candidates taken are read for the near-duplicate rule (about `num_neg` texts a
//! query, however wide the window). A hit skipped for several reasons counts under the
//! first: same id, above the margin, outside the window, near-duplicate; near-duplicates
//! are counted among the candidates taken.

use std::ops::AddAssign;

/// How the negatives are chosen among the candidates left in the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampling {
    /// The best-ranked ones.
    Top,
    /// A seeded random draw (the same seed, query and positive give the same draw).
    Random { seed: u64 },
}

/// The margin against the positive's own score: a candidate scoring above
/// `max_score_ratio * positive` or above `positive - min_score_gap` is skipped.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Margin {
    pub max_score_ratio: Option<f64>,
    pub min_score_gap: Option<f64>,
}

impl Margin {
    pub fn is_set(&self) -> bool {
        self.max_score_ratio.is_some() || self.min_score_gap.is_some()
    }

    pub fn validate(&self) -> Result<(), String> {
        if let Some(r) = self.max_score_ratio {
            if !(r > 0.0 && r <= 1.0) {
                return Err(format!("max_score_ratio must be in (0, 1], got {r}"));
            }
        }
        if let Some(g) = self.min_score_gap {
            if !(g >= 0.0 && g.is_finite()) {
                return Err(format!("min_score_gap must be >= 0, got {g}"));
            }
        }
        Ok(())
    }

    /// The highest score a candidate may have, given the positive's; None: no bound (no
    /// margin set, or the positive's score is unknown).
    pub fn bound(&self, positive: Option<f32>) -> Option<f64> {
        let p = f64::from(positive?);
        let by_ratio = self.max_score_ratio.map(|r| r * p);
        let by_gap = self.min_score_gap.map(|g| p - g);
        match (by_ratio, by_gap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Candidates skipped, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    pub same_id: u64,
    pub near_duplicate: u64,
    pub above_margin: u64,
    pub outside_window: u64,
}

impl AddAssign for Skipped {
    fn add_assign(&mut self, other: Skipped) {
        self.same_id += other.same_id;
        self.near_duplicate += other.near_duplicate;
        self.above_margin += other.above_margin;
        self.outside_window += other.outside_window;
    }
}

/// What is asked of one query's walk.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub num_neg: usize,
    pub start_rank: usize,
    pub end_rank: Option<usize>,
    pub sampling: Sampling,
    pub margin: Margin,
}

impl Plan {
    pub fn validate(&self) -> Result<(), String> {
        if self.num_neg == 0 {
            return Err("num_neg must be >= 1, got 0".into());
        }
        if let Some(end) = self.end_rank {
            if end <= self.start_rank {
                return Err(format!(
                    "end_rank must be > start_rank (the window is candidate ranks \
                     start_rank to end_rank - 1), got start_rank={}, end_rank={end}",
                    self.start_rank
                ));
            }
        }
        self.margin.validate()
    }

    /// How many hits to walk at most when the caller does not say, as
    /// `rare.retriever.default_depth`: None (no limit: as deep as the walk needs) with a
    /// margin, unless a random draw has no window end; else `max(50, 4 * (start_rank +
    /// num_neg))`, and at least `end_rank + 10` with a window end.
    pub fn default_depth(&self) -> Option<usize> {
        if self.margin.is_set() && (self.sampling == Sampling::Top || self.end_rank.is_some()) {
            return None;
        }
        let mut depth = 50.max(4 * (self.start_rank + self.num_neg));
        if let Some(end) = self.end_rank {
            depth = depth.max(end + 10);
        }
        Some(depth)
    }

    /// How many hits a first search should fetch: usually enough to settle the query. Top
    /// sampling needs `start_rank + num_neg` candidates and room for a few hits skipped
    /// (the positive, a near-duplicate taken, one above the margin); the search costs more
    /// the deeper it goes, and a retry four times deeper costs more still.
    pub fn first_k(&self, depth: usize) -> usize {
        let k = match (self.sampling, self.end_rank) {
            (Sampling::Top, _) => (2 * self.num_neg).max(self.start_rank + self.num_neg) + 4,
            (Sampling::Random { .. }, Some(end)) => end + 4,
            (Sampling::Random { .. }, None) => depth,
        };
        k.min(depth)
    }
}

/// The outcome of a walk: kept hits (their index in the walked list and their rank), the
/// skips, and whether the walk ended by its own rules (else the hits ran out first). With
/// random sampling `kept` holds every candidate of the window, not yet checked for
/// near-duplicates: [`finish`] draws from them.
#[derive(Debug, Default)]
pub struct Walked {
    pub kept: Vec<(usize, usize)>,
    pub skipped: Skipped,
    pub settled: bool,
}

/// Walk `scores.len()` hits, best first. `is_positive(i)` says whether hit `i` is the
/// positive, `near_duplicate(i)` whether it repeats the positive's text (with top sampling,
/// asked only of the window's candidates until `num_neg` are kept; it may fail, e.g.
/// reading a stored text). Random draws happen in [`finish`].
pub fn walk<E>(
    plan: &Plan,
    bound: Option<f64>,
    scores: &[f32],
    mut is_positive: impl FnMut(usize) -> bool,
    mut near_duplicate: impl FnMut(usize) -> Result<bool, E>,
) -> Result<Walked, E> {
    let mut out = Walked::default();
    let mut rank = 0usize;
    let top = plan.sampling == Sampling::Top;
    for (i, &score) in scores.iter().enumerate() {
        if top && out.kept.len() == plan.num_neg {
            out.settled = true;
            return Ok(out);
        }
        if plan.end_rank.is_some_and(|end| rank >= end) {
            out.settled = true;
            return Ok(out);
        }
        if is_positive(i) {
            out.skipped.same_id += 1;
            continue;
        }
        if bound.is_some_and(|b| f64::from(score) > b) {
            out.skipped.above_margin += 1;
            continue;
        }
        let r = rank;
        rank += 1;
        if r < plan.start_rank {
            out.skipped.outside_window += 1;
            continue;
        }
        if top && near_duplicate(i)? {
            out.skipped.near_duplicate += 1;
            continue;
        }
        out.kept.push((i, r));
    }
    out.settled =
        (top && out.kept.len() == plan.num_neg) || plan.end_rank.is_some_and(|end| rank >= end);
    Ok(out)
}

/// The negatives of a finished walk: the candidates kept (top), or `num_neg` of them in the
/// order drawn (random), each drawn one checked by `near_duplicate` (a near-duplicate is
/// counted and the draw goes on).
pub fn finish<E>(
    plan: &Plan,
    walked: Walked,
    query: &str,
    positive: &str,
    mut near_duplicate: impl FnMut(usize) -> Result<bool, E>,
) -> Result<(Vec<(usize, usize)>, Skipped), E> {
    let mut skipped = walked.skipped;
    let kept = match plan.sampling {
        Sampling::Top => walked.kept,
        Sampling::Random { seed } => {
            let mut rng = SplitMix64::for_query(seed, query, positive);
            let mut draw = Draw::new(walked.kept.len());
            let mut out = Vec::with_capacity(plan.num_neg);
            while out.len() < plan.num_neg {
                let Some(j) = draw.next(&mut rng) else {
                    break;
                };
                let candidate = walked.kept[j];
                if near_duplicate(candidate.0)? {
                    skipped.near_duplicate += 1;
                    continue;
                }
                out.push(candidate);
            }
            out
        }
    };
    Ok((kept, skipped))
}

/// FNV-1a, 64 bits.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Vigna's SplitMix64: small, fast, and the same in Python (`rare.retriever.SplitMix64`).
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

impl SplitMix64 {
    pub fn new(state: u64) -> Self {
        SplitMix64 { state }
    }

    /// The generator of one query's draw: FNV-1a of `query \x1f positive`, mixed with the seed.
    pub fn for_query(seed: u64, query: &str, positive: &str) -> Self {
        let mut bytes = Vec::with_capacity(query.len() + positive.len() + 1);
        bytes.extend_from_slice(query.as_bytes());
        bytes.push(0x1f);
        bytes.extend_from_slice(positive.as_bytes());
        SplitMix64::new(fnv1a64(&bytes) ^ seed.wrapping_mul(GOLDEN))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n >= 1); the modulo's bias is below 2^-40 for any n here.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A partial Fisher-Yates shuffle of `0..m`, one index at a time: the `t`-th call gives
/// the `t`-th index drawn, or None once all `m` are drawn.
pub struct Draw {
    pool: Vec<usize>,
    at: usize,
}

impl Draw {
    pub fn new(m: usize) -> Self {
        Draw {
            pool: (0..m).collect(),
            at: 0,
        }
    }

    pub fn next(&mut self, rng: &mut SplitMix64) -> Option<usize> {
        let (i, m) = (self.at, self.pool.len());
        if i >= m {
            return None;
        }
        let j = i + rng.below(m - i);
        self.pool.swap(i, j);
        self.at += 1;
        Some(self.pool[i])
    }
}

/// `min(n, m)` distinct indices of `0..m`, in the order a partial Fisher-Yates shuffle draws
/// them: the first `j` of a draw of `n` are the draw of `j`.
pub fn sample_indices(m: usize, n: usize, rng: &mut SplitMix64) -> Vec<usize> {
    let mut draw = Draw::new(m);
    std::iter::from_fn(|| draw.next(rng)).take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(num_neg: usize, start: usize, end: Option<usize>, sampling: Sampling) -> Plan {
        Plan {
            num_neg,
            start_rank: start,
            end_rank: end,
            sampling,
            margin: Margin::default(),
        }
    }

    /// `None`: the positive; a negative score: a near-duplicate (of that absolute score).
    fn run(plan: &Plan, bound: Option<f64>, seen: &[Option<f32>]) -> Walked {
        let scores: Vec<f32> = seen.iter().map(|s| s.unwrap_or(99.0).abs()).collect();
        walk::<()>(
            plan,
            bound,
            &scores,
            |i| seen[i].is_none(),
            |i| Ok(seen[i].is_some_and(|s| s < 0.0)),
        )
        .unwrap()
    }

    #[test]
    fn fnv_and_splitmix_match_their_definitions() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        // Vigna's reference output for seed 1234567
        let mut rng = SplitMix64::new(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn window_and_margin_skip_and_count() {
        // ranks: 9.0 -> 0, (positive), 8.0 -> 1, 7.5 -> 2 (a near-duplicate), 7.0 -> 3, ...
        let hits = [
            Some(9.0),
            None,
            Some(8.0),
            Some(-7.5),
            Some(7.0),
            Some(6.0),
            Some(5.0),
        ];
        let p = plan(2, 1, None, Sampling::Top);
        let w = run(&p, None, &hits);
        assert_eq!(w.kept, vec![(2, 1), (4, 3)]);
        assert!(w.settled);
        assert_eq!(
            w.skipped,
            Skipped {
                same_id: 1,
                near_duplicate: 1,
                above_margin: 0,
                outside_window: 1
            }
        );
        // Above the margin counts first (the near-duplicate, 7.5, is never read), and
        // ranks count the candidates within the margin only.
        let w = run(&p, Some(6.5), &hits);
        assert_eq!(w.kept, vec![(6, 1)]);
        assert_eq!(w.skipped.above_margin, 4);
        assert_eq!(w.skipped.near_duplicate, 0);
        assert_eq!(w.skipped.outside_window, 1);
        assert!(!w.settled);
        // A near-duplicate outside the window is never read: it counts as outside.
        let p = plan(2, 3, None, Sampling::Top);
        let w = run(&p, None, &hits);
        assert_eq!(w.kept, vec![(4, 3), (5, 4)]);
        assert_eq!(w.skipped.near_duplicate, 0);
        assert_eq!(w.skipped.outside_window, 3);
        let p = plan(5, 0, Some(2), Sampling::Top);
        let w = run(&p, None, &hits);
        assert_eq!(w.kept, vec![(0, 0), (2, 1)]);
        assert!(w.settled, "the window's end settles the walk");
        let p = plan(6, 0, None, Sampling::Top);
        assert!(!run(&p, None, &hits).settled, "ran out of hits");
    }

    #[test]
    fn random_draws_check_only_what_they_draw() {
        let hits: Vec<Option<f32>> = (0..40)
            .map(|i| {
                Some(if i % 5 == 2 {
                    -(50.0 - i as f32)
                } else {
                    50.0 - i as f32
                })
            })
            .collect();
        let p = plan(4, 2, Some(30), Sampling::Random { seed: 9 });
        let w = run(&p, None, &hits);
        assert_eq!(w.kept.len(), 28, "every candidate of the window, unchecked");
        assert_eq!(w.skipped.near_duplicate, 0);
        let mut asked = Vec::new();
        let (kept, skipped) = finish::<()>(&p, w, "q", "p", |i| {
            asked.push(i);
            Ok(hits[i].is_some_and(|s| s < 0.0))
        })
        .unwrap();
        assert_eq!(kept.len(), 4);
        assert!(kept
            .iter()
            .all(|&(i, r)| i == r && i % 5 != 2 && (2..30).contains(&r)));
        assert_eq!(asked.len(), 4 + skipped.near_duplicate as usize);
        // the draw is the plain draw with the near-duplicates left out
        let mut rng = SplitMix64::for_query(9, "q", "p");
        let order: Vec<usize> = sample_indices(28, 28, &mut rng)
            .into_iter()
            .map(|j| j + 2)
            .filter(|i| i % 5 != 2)
            .take(4)
            .collect();
        assert_eq!(kept.iter().map(|&(i, _)| i).collect::<Vec<_>>(), order);
    }

    #[test]
    fn draws_are_seeded_and_prefix_stable() {
        let mut a = SplitMix64::for_query(7, "q", "p");
        let mut b = SplitMix64::for_query(7, "q", "p");
        let first = sample_indices(20, 5, &mut a);
        assert_eq!(first, sample_indices(20, 5, &mut b));
        let mut c = SplitMix64::for_query(7, "q", "p");
        assert_eq!(sample_indices(20, 3, &mut c), first[..3].to_vec());
        let mut d = SplitMix64::for_query(8, "q", "p");
        assert_ne!(sample_indices(20, 5, &mut d), first);
        let mut e = SplitMix64::for_query(7, "q", "p");
        let mut all = sample_indices(4, 9, &mut e);
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2, 3]);
    }

    #[test]
    fn bad_plans_name_the_setting() {
        let bad = plan(3, 5, Some(5), Sampling::Top);
        assert!(bad.validate().unwrap_err().contains("end_rank"));
        let mut bad = plan(3, 0, None, Sampling::Top);
        bad.margin.max_score_ratio = Some(1.5);
        assert!(bad.validate().unwrap_err().contains("max_score_ratio"));
        bad.margin = Margin {
            max_score_ratio: None,
            min_score_gap: Some(-1.0),
        };
        assert!(bad.validate().unwrap_err().contains("min_score_gap"));
        let m = Margin {
            max_score_ratio: Some(0.5),
            min_score_gap: Some(1.0),
        };
        assert_eq!(m.bound(Some(10.0)), Some(5.0));
        assert_eq!(m.bound(Some(1.5)), Some(0.5));
        assert_eq!(m.bound(None), None);
        assert_eq!(Margin::default().bound(Some(3.0)), None);
    }

    #[test]
    fn default_depth_follows_the_settings() {
        assert_eq!(plan(3, 0, None, Sampling::Top).default_depth(), Some(50));
        assert_eq!(plan(3, 20, None, Sampling::Top).default_depth(), Some(92));
        let random = plan(3, 0, Some(100), Sampling::Random { seed: 1 });
        assert_eq!(random.default_depth(), Some(110));
        let mut margin = plan(3, 0, None, Sampling::Top);
        margin.margin.max_score_ratio = Some(0.5);
        assert_eq!(
            margin.default_depth(),
            None,
            "a margin walks as deep as it needs"
        );
        margin.sampling = Sampling::Random { seed: 1 };
        assert_eq!(
            margin.default_depth(),
            Some(50),
            "no window end: a finite window"
        );
    }
}
