//! When a threshold trigger runs its policy, as a function of what each
//! check saw and when: once per crossing, after the condition has held for
//! the trigger's `for`, never twice within the policy's `cooldown`. The
//! scheduler feeds it one check a second; tests feed it times of their own.

/// The state of one threshold trigger between checks.
#[derive(Debug, Clone, Default)]
pub(crate) struct Crossing {
    /// How long the condition must hold before the policy runs, ms.
    hold_ms: i64,
    /// The least time between two runs, ms.
    cooldown_ms: i64,
    /// Since when the condition has held without a break.
    since: Option<i64>,
    /// Whether this crossing has run the policy already.
    fired: bool,
    /// When the policy last ran.
    last_run: Option<i64>,
}

impl Crossing {
    pub(crate) fn new(hold_ms: i64, cooldown_ms: i64) -> Self {
        Crossing {
            hold_ms,
            cooldown_ms,
            ..Crossing::default()
        }
    }

    /// Returns true if and only if the policy is to run now, given whether
    /// the condition holds at `now_ms`. A check that finds it not holding
    /// re-arms the trigger.
    pub(crate) fn check(&mut self, holds: bool, now_ms: i64) -> bool {
        if !holds {
            self.since = None;
            self.fired = false;
            return false;
        }
        let start = *self.since.get_or_insert(now_ms);
        if self.fired || now_ms - start < self.hold_ms {
            return false;
        }
        if self.last_run.is_some_and(|l| now_ms - l < self.cooldown_ms) {
            return false;
        }
        self.fired = true;
        self.last_run = Some(now_ms);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Crossing;

    /// Feeds `checks` (holds?, at ms) and returns the times the policy ran.
    fn runs(c: &mut Crossing, checks: &[(bool, i64)]) -> Vec<i64> {
        checks
            .iter()
            .filter(|(holds, at)| c.check(*holds, *at))
            .map(|(_, at)| *at)
            .collect()
    }

    #[test]
    fn once_per_crossing_and_again_after_a_re_arm() {
        let mut c = Crossing::new(0, 0);
        let checks = [
            (false, 0),
            (true, 1_000),
            (true, 2_000),
            (true, 3_000),
            (false, 4_000),
            (true, 5_000),
            (true, 6_000),
        ];
        assert_eq!(runs(&mut c, &checks), [1_000, 5_000]);
    }

    #[test]
    fn the_condition_must_hold_for_its_for_without_a_break() {
        let mut c = Crossing::new(2_500, 0);
        let checks = [
            (true, 0),
            (true, 1_000),
            (true, 2_000),
            // Broken off: the clock starts again.
            (false, 3_000),
            (true, 4_000),
            (true, 5_000),
            (true, 6_000),
            (true, 7_000),
            (true, 8_000),
        ];
        assert_eq!(runs(&mut c, &checks), [7_000]);
    }

    #[test]
    fn a_cooldown_holds_back_a_crossing_until_it_has_passed() {
        let mut c = Crossing::new(0, 10_000);
        let checks = [
            (true, 0),
            (false, 1_000),
            // Crosses again within the cooldown: not yet.
            (true, 2_000),
            (true, 9_000),
            // The cooldown is over and the crossing still holds: it runs.
            (true, 10_000),
            (true, 11_000),
        ];
        assert_eq!(runs(&mut c, &checks), [0, 10_000]);
    }
}
