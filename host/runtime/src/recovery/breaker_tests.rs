//! Breaker transitions, driven by a hand-moved clock: no test sleeps.

use super::*;
use warden_policy::recovery::WindowKind;

const OK: Call = Call {
    failed: false,
    slow: false,
};
const FAIL: Call = Call {
    failed: true,
    slow: false,
};
const SLOW: Call = Call {
    failed: false,
    slow: true,
};

fn opts(f: impl FnOnce(&mut BreakerOptions)) -> BreakerOptions {
    let mut o = BreakerOptions {
        window_size: 10,
        minimum_calls: 4,
        failure_rate: 50.0,
        wait_in_open_ms: 1_000,
        half_open_calls: 2,
        ..BreakerOptions::default()
    };
    f(&mut o);
    o
}

fn state(b: &Breaker, now: i64) -> State {
    b.state(now).0
}

#[test]
fn opens_at_the_failure_rate_once_minimum_calls_are_in_the_window() {
    let b = Breaker::new(&opts(|_| {}), 0);
    for c in [FAIL, FAIL, FAIL] {
        assert_eq!(b.record(0, c), None, "fewer than minimum_calls");
    }
    assert_eq!(state(&b, 0), State::Closed);
    let t = b.record(0, OK).expect("4 calls, 75% failed");
    assert_eq!((t.from, t.to), (State::Closed, State::Open));
    assert!(t.reason.contains("failure rate 75.0%"), "{}", t.reason);
    assert_eq!(b.acquire(500).0, Permit::Refused(Some(500)));
    assert!(!b.is_closed());
}

#[test]
fn a_rate_below_the_threshold_keeps_it_closed_and_old_calls_leave_the_count_window() {
    let b = Breaker::new(&opts(|o| o.minimum_calls = 10), 0);
    for i in 0..100 {
        // 4 failures in every 10 calls: 40% < 50%.
        assert_eq!(b.record(i, if i % 10 < 4 { FAIL } else { OK }), None);
    }
    let (v, _) = b.view(100);
    assert_eq!((v.window.calls, v.window.failures), (10, 4));
    assert_eq!(v.failure_rate, Some(40.0));
}

#[test]
fn slow_calls_open_it_at_the_slow_call_rate() {
    let b = Breaker::new(&opts(|o| o.slow_call_rate = 50.0), 0);
    for c in [OK, SLOW, OK] {
        assert_eq!(b.record(0, c), None);
    }
    let t = b.record(0, SLOW).expect("50% slow");
    assert!(t.reason.contains("slow-call rate 50.0%"), "{}", t.reason);
}

#[test]
fn open_then_half_open_after_the_wait_then_closed_by_good_calls() {
    let b = Breaker::new(&opts(|_| {}), 0);
    for _ in 0..4 {
        b.record(0, FAIL);
    }
    assert_eq!(state(&b, 999), State::Open);
    // Without `automatic_half_open` the state moves when asked at or after the wait.
    let (p, t) = b.acquire(1_000);
    assert_eq!(p, Permit::Allowed);
    assert_eq!(t.unwrap().to, State::HalfOpen);
    assert_eq!(b.acquire(1_000).0, Permit::Allowed, "2 calls permitted");
    assert_eq!(b.acquire(1_000).0, Permit::Refused(None), "not a third");
    assert_eq!(b.record(1_001, OK), None);
    let t = b.record(1_002, OK).unwrap();
    assert_eq!((t.from, t.to), (State::HalfOpen, State::Closed));
    let (v, _) = b.view(1_002);
    assert_eq!(v.window.calls, 0, "closing starts a fresh window");
    assert!(b.is_closed());
}

#[test]
fn failing_half_open_calls_reopen_with_a_growing_wait() {
    let b = Breaker::new(
        &opts(|o| {
            o.wait_multiplier = 2.0;
            o.max_wait_in_open_ms = 3_000;
        }),
        0,
    );
    for _ in 0..4 {
        b.record(0, FAIL);
    }
    let mut now = 0;
    for wait in [1_000, 2_000, 3_000, 3_000] {
        let (v, _) = b.view(now);
        assert_eq!(v.open_until_ms, Some(now + wait), "opening {}", v.openings);
        now += wait;
        b.acquire(now);
        b.record(now, FAIL);
        let t = b.record(now, OK).unwrap();
        assert_eq!((t.from, t.to), (State::HalfOpen, State::Open));
    }
}

#[test]
fn automatic_half_open_shows_without_a_call_and_max_wait_in_half_open_reopens() {
    let b = Breaker::new(
        &opts(|o| {
            o.automatic_half_open = true;
            o.max_wait_in_half_open_ms = 500;
        }),
        0,
    );
    for _ in 0..4 {
        b.record(0, FAIL);
    }
    let (v, t) = b.view(1_000);
    assert_eq!(v.state, State::HalfOpen);
    assert_eq!(t.unwrap().reason, "the wait in open is over");
    let (s, t) = b.state(1_500);
    assert_eq!(s, State::Open);
    assert!(
        t.unwrap()
            .reason
            .contains("half-open for longer than 500ms")
    );
}

#[test]
fn time_window_forgets_calls_older_than_its_seconds() {
    let b = Breaker::new(
        &opts(|o| {
            o.window = WindowKind::Time;
            o.window_size = 5;
            o.minimum_calls = 3;
        }),
        0,
    );
    b.record(0, FAIL);
    b.record(1_000, FAIL);
    assert_eq!(b.view(4_999).0.window.calls, 2);
    // Second 0 has left the window of seconds 1..=5.
    assert_eq!(b.view(5_000).0.window.failures, 1);
    assert_eq!(b.record(5_000, OK), None, "1 of 2 is below minimum calls");
    let t = b.record(5_500, FAIL).expect("2 of 3 failed");
    assert_eq!(t.to, State::Open);
    // Much later, everything is gone.
    let b = Breaker::new(&opts(|o| o.window = WindowKind::Time), 0);
    b.record(0, FAIL);
    assert_eq!(b.view(3_600_000).0.window.calls, 0);
}

#[test]
fn forced_states_hold_until_reset() {
    let b = Breaker::new(&opts(|_| {}), 0);
    b.force(0, State::ForcedOpen, "operator".into()).unwrap();
    assert_eq!(b.acquire(10_000_000).0, Permit::Refused(None));
    assert_eq!(b.open_for(0, 5, "plugin".into()), None, "the operator wins");
    b.force(1, State::Disabled, "operator".into()).unwrap();
    for _ in 0..10 {
        b.record(1, FAIL);
    }
    assert_eq!(b.view(1).0.window.calls, 0, "disabled records nothing");
    b.force(2, State::MetricsOnly, "operator".into()).unwrap();
    for _ in 0..10 {
        assert_eq!(b.record(2, FAIL), None, "metrics-only never moves");
    }
    assert_eq!(b.view(2).0.window.failures, 10);
    let t = b.force(3, State::Closed, "reset".into()).unwrap();
    assert_eq!((t.from, t.to), (State::MetricsOnly, State::Closed));
    assert_eq!(b.view(3).0.window.calls, 0, "reset empties the window");
}

#[test]
fn a_plugin_opens_it_for_as_long_as_it_says() {
    let b = Breaker::new(&opts(|_| {}), 0);
    b.open_for(100, 250, "plugin".into()).unwrap();
    assert_eq!(b.acquire(349).0, Permit::Refused(Some(1)));
    assert_eq!(b.acquire(350).0, Permit::Allowed);
}

#[test]
fn saved_state_comes_back_and_a_reshaped_window_starts_empty() {
    let o = opts(|_| {});
    let b = Breaker::new(&o, 0);
    for _ in 0..4 {
        b.record(0, FAIL);
    }
    let json = serde_json::to_string(&b.save()).unwrap();
    let back = Breaker::restore(&o, serde_json::from_str(&json).unwrap());
    assert_eq!(back.view(10), b.view(10));
    b.force(20, State::Closed, "reset".into());
    b.record(20, FAIL);
    b.reconfigure(&opts(|o| o.window_size = 3));
    assert_eq!(b.view(20).0.window.calls, 0);
}
