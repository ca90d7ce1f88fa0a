//! A possession-by-possession basketball game, after the March Madness
//! model of a well-known Python multiprocessing article: possessions end in a turnover or a
//! shot; a miss may give an offensive rebound and another shot.
//! Deterministic: the same matchup and game number give the same score.
#![allow(dead_code)] // each example that includes this uses part of it

/// One team's strengths, each near 1.0.
#[derive(Clone, Copy, Debug)]
pub struct Team {
    pub offense: f64,
    pub defense: f64,
    pub three_rate: f64,
    pub pace: f64,
}

/// SplitMix64: tiny, fast, and good enough for a simulation.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Team `i` of a field: ratings drawn once from its index.
pub fn team(i: usize) -> Team {
    let mut r = Rng::new(1000 + i as u64);
    Team {
        offense: 0.85 + 0.3 * r.unit(),
        defense: 0.85 + 0.3 * r.unit(),
        three_rate: 0.25 + 0.2 * r.unit(),
        pace: 64.0 + 10.0 * r.unit(),
    }
}

/// The two teams of first-round matchup `m` in a 64-team bracket: 1 v 64, 2 v 63, ...
pub fn matchup(m: usize) -> (usize, usize) {
    (m, 63 - m)
}

/// Points `att` scores in one possession against `def`.
fn possession(att: &Team, def: &Team, rng: &mut Rng) -> i32 {
    let edge = 0.12 * (att.offense - def.defense);
    loop {
        if rng.unit() < 0.14 {
            return 0; // turnover
        }
        let three = rng.unit() < att.three_rate;
        let make = if three { 0.35 } else { 0.50 } + edge;
        if rng.unit() < make {
            return if three { 3 } else { 2 };
        }
        if rng.unit() >= 0.28 {
            return 0; // defensive rebound
        }
    }
}

/// Final margin (a minus b) of game number `game` between teams `a` and `b`.
pub fn play(a: usize, b: usize, game: u64) -> i16 {
    let (ta, tb) = (team(a), team(b));
    let mut rng = Rng::new(((a as u64) << 48) ^ ((b as u64) << 32) ^ game);
    let possessions = ((ta.pace + tb.pace) / 2.0).round() as usize;
    let mut margin = 0;
    for _ in 0..possessions {
        margin += possession(&ta, &tb, &mut rng) - possession(&tb, &ta, &mut rng);
    }
    margin as i16
}
