//! The recent attempts of one operation (per breaker), kept by the host and
//! shown to the plugin oldest first, and when the current run of failures
//! began (the `first-failed-ms` a strategy sees).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use warden_core::records::{Attempt, Outcome};

/// The history of one operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    attempts: VecDeque<Attempt>,
    /// When the current run of failures began; `None` after a success.
    pub failing_since_ms: Option<i64>,
}

impl History {
    /// Adds an attempt, keeping the newest `keep`.
    pub fn push(&mut self, keep: usize, a: Attempt) {
        while self.attempts.len() >= keep.max(1) {
            self.attempts.pop_front();
        }
        match a.outcome {
            Outcome::Success => self.failing_since_ms = None,
            Outcome::Failure | Outcome::Timeout => {
                self.failing_since_ms.get_or_insert(a.at_ms);
            }
            Outcome::Rejected => {}
        }
        self.attempts.push_back(a);
    }

    /// The attempts, oldest first.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.attempts.iter().copied().collect()
    }

    /// Drops the oldest beyond `keep` (a reload lowered `history`).
    pub fn trim(&mut self, keep: usize) {
        while self.attempts.len() > keep.max(1) {
            self.attempts.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(at_ms: i64, outcome: Outcome) -> Attempt {
        Attempt {
            at_ms,
            outcome,
            duration_ms: 1,
        }
    }

    #[test]
    fn keeps_the_newest_and_tracks_the_failing_run() {
        let mut h = History::default();
        h.push(3, at(1, Outcome::Failure));
        h.push(3, at(2, Outcome::Timeout));
        assert_eq!(h.failing_since_ms, Some(1));
        h.push(3, at(3, Outcome::Success));
        assert_eq!(h.failing_since_ms, None);
        h.push(3, at(4, Outcome::Failure));
        assert_eq!(h.failing_since_ms, Some(4));
        let kept: Vec<i64> = h.attempts().iter().map(|a| a.at_ms).collect();
        assert_eq!(kept, vec![2, 3, 4]);
        h.trim(1);
        assert_eq!(h.attempts().len(), 1);
    }
}
