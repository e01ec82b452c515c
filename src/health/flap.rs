//! Flap damping in one pure type: `fall` consecutive failures take a node down, `rise`
//! consecutive successes bring it back, and the first result ever decides at once (a node
//! that is down at start-up should not be answered for `fall` rounds).

use serde::Serialize;

/// What the checks say about a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// No result yet: treated as up, so a fresh start answers.
    Unknown,
    /// Passing.
    Up,
    /// Failing.
    Down,
}

/// Consecutive-result counter with thresholds.
#[derive(Debug, Clone)]
pub struct FlapDamping {
    rise: u32,
    fall: u32,
    state: Health,
    /// Consecutive results that disagree with `state`.
    streak: u32,
}

impl FlapDamping {
    /// Starts in `Unknown`; thresholds of 0 act as 1.
    pub fn new(rise: u32, fall: u32) -> Self {
        FlapDamping {
            rise: rise.max(1),
            fall: fall.max(1),
            state: Health::Unknown,
            streak: 0,
        }
    }

    /// Resumes from a state already known (a reload restarting the checks): the next result
    /// that agrees with it is no transition.
    pub fn resuming(rise: u32, fall: u32, state: Health) -> Self {
        FlapDamping {
            state,
            ..FlapDamping::new(rise, fall)
        }
    }

    /// Current state.
    pub fn state(&self) -> Health {
        self.state
    }

    /// True while results disagree with the state but have not yet flipped it: the time to
    /// recheck quickly.
    pub fn confirming(&self) -> bool {
        self.streak > 0
    }

    /// Feeds one result; returns `(old, new)` when the state changes.
    pub fn observe(&mut self, ok: bool) -> Option<(Health, Health)> {
        let old = self.state;
        let agrees = matches!((old, ok), (Health::Up, true) | (Health::Down, false));
        let new = match old {
            Health::Unknown => Some(if ok { Health::Up } else { Health::Down }),
            _ if agrees => {
                self.streak = 0;
                None
            }
            _ => {
                self.streak += 1;
                let threshold = if ok { self.rise } else { self.fall };
                (self.streak >= threshold).then_some(if ok { Health::Up } else { Health::Down })
            }
        };
        new.map(|new| {
            self.state = new;
            self.streak = 0;
            (old, new)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_result_decides_then_thresholds_hold() {
        let mut h = FlapDamping::new(2, 3);
        assert_eq!(h.state(), Health::Unknown);
        assert_eq!(h.observe(true), Some((Health::Unknown, Health::Up)));
        assert_eq!(h.observe(false), None);
        assert!(h.confirming());
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(false), Some((Health::Up, Health::Down)));
        assert!(!h.confirming());
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(true), Some((Health::Down, Health::Up)));
        let mut down_first = FlapDamping::new(2, 3);
        assert_eq!(
            down_first.observe(false),
            Some((Health::Unknown, Health::Down))
        );
    }

    #[test]
    fn a_single_lost_probe_never_flips() {
        let mut h = FlapDamping::new(2, 3);
        h.observe(true);
        for _ in 0..100 {
            assert_eq!(h.observe(false), None);
            assert_eq!(h.observe(true), None);
        }
        assert_eq!(h.state(), Health::Up);
    }

    #[test]
    fn flapping_input_is_damped() {
        // fail, fail, ok, fail, fail, ok ...: never three failures in a row, never down.
        let mut h = FlapDamping::new(2, 3);
        h.observe(true);
        for i in 0..300 {
            assert_eq!(h.observe(i % 3 == 2), None, "step {i}");
        }
        // Down, then ok, fail, ok, fail ...: never two successes in a row, never up.
        let mut h = FlapDamping::new(2, 3);
        h.observe(false);
        for i in 0..300 {
            assert_eq!(h.observe(i % 2 == 0), None, "step {i}");
        }
        assert_eq!(h.state(), Health::Down);
    }

    #[test]
    fn thresholds_of_one_flip_immediately() {
        let mut h = FlapDamping::new(1, 1);
        h.observe(true);
        assert_eq!(h.observe(false), Some((Health::Up, Health::Down)));
        assert_eq!(h.observe(true), Some((Health::Down, Health::Up)));
    }
}
