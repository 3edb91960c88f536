//! `log::replay_until`: the shadow's state at a store or at a violation of a
//! logged run, as the live run had it then.

use super::*;
use crate::shadow::log::{replay_until, Until};

fn seqs(lines: &[String]) -> Vec<u64> {
    let mut out: Vec<u64> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("seq").and_then(serde_json::Value::as_u64))
        .collect();
    out.dedup();
    out
}

#[test]
fn the_state_at_a_seq_is_the_live_state_after_that_store() {
    let (lines, live) = logged_run();
    let all = seqs(&lines);
    let first = live.s.violations()[0].seq;
    let at = replay_until(lines.iter().map(String::as_str), Until::Seq(first)).expect("replays");
    assert!(at.reached);
    assert_eq!(at.seq, Some(first));
    assert!(!at.shadow.violations().is_empty());
    assert!(at.shadow.violations().iter().all(|v| v.seq <= first));
    let before = all[all.iter().position(|s| *s == first).unwrap() - 1];
    let earlier = replay_until(lines.iter().map(String::as_str), Until::Seq(before)).expect("replays");
    assert_eq!(earlier.seq, Some(before));
    assert!(earlier.shadow.violations().iter().all(|v| v.seq < first));
    assert!(earlier.shadow.stats.events < at.shadow.stats.events);
    // The whole log: the live run's final state and verdict.
    let end = replay_until(lines.iter().map(String::as_str), Until::End).expect("replays");
    assert_eq!(end.shadow.state().snapshot(), live.s.state().snapshot());
    assert_eq!(end.seq, all.last().copied());
    assert_eq!(end.shadow.stats.violations, live.s.stats.violations);
}

#[test]
fn the_nth_violation_stops_at_its_store() {
    let (lines, live) = logged_run();
    let n = live.s.stats.violations;
    assert!(n >= 1);
    for k in 1..=n {
        let want = &live.s.violations()[k as usize - 1];
        let at = replay_until(lines.iter().map(String::as_str), Until::Violation(k)).expect("replays");
        assert!(at.reached);
        assert!(at.shadow.stats.violations >= k);
        let got = &at.shadow.violations()[k as usize - 1];
        assert_eq!(
            (got.violation.invariant, got.seq),
            (want.violation.invariant, want.seq)
        );
    }
}

#[test]
fn a_stop_past_the_end_is_not_reached() {
    let (lines, live) = logged_run();
    let last = *seqs(&lines).last().unwrap();
    let past = replay_until(lines.iter().map(String::as_str), Until::Seq(last + 1)).expect("replays");
    assert!(!past.reached);
    assert_eq!(past.seq, Some(last));
    let many = live.s.stats.violations + 1;
    let past = replay_until(lines.iter().map(String::as_str), Until::Violation(many)).expect("replays");
    assert!(!past.reached);
    // Before the first store: the fresh state, no store applied.
    let first = seqs(&lines)[0];
    let none = replay_until(lines.iter().map(String::as_str), Until::Seq(first - 1)).expect("replays");
    assert!(none.reached && none.seq.is_none() && none.shadow.stats.events == 0);
}
