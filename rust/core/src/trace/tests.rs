use super::*;

const SNAP: &str = r#"{"variant":"modern","threads_per_core":2,"stop":"s",
        "threads":[{"cpu":0,"hw_cpu_id":8,"lpidr":0,"kvm_hstate":{"kvm_vcpu":0,"kvm_vcore":0,"ptid":0,
        "hwthread_req":0,"hwthread_state":0,"napping":0,"in_guest":0}},
        {"cpu":1,"hw_cpu_id":9,"lpidr":0,"kvm_hstate":{"kvm_vcpu":0,"kvm_vcore":0,"ptid":1,
        "hwthread_req":0,"hwthread_state":1,"napping":0,"in_guest":0}}]}"#;

fn line(s: &str) -> String {
    s.replace('\n', " ")
}

#[test]
fn clean_trace_with_blank_lines() {
    let text = format!("{}\n\n{}\n", line(SNAP), line(SNAP));
    let r = check_text(&text, None, false);
    // No vcore in these stops: nothing wrong seen, but not judged.
    assert_eq!((r.snapshots, r.violations.len(), r.exit_code()), (2, 0, 2));
    assert_eq!(
        (r.verdict(), r.not_judged, r.first_not_judged),
        ("not judged", 2, Some(1))
    );
    assert_eq!(check_text("\n\n", None, false).verdict(), "empty");
}

#[test]
fn violations_carry_line_and_stop() {
    let bad = line(SNAP).replace(r#""ptid":1"#, r#""ptid":3"#);
    let r = check_text(&format!("{}\n{}\n", line(SNAP), bad), None, false);
    assert_eq!(r.exit_code(), 1);
    assert!(r
        .violations
        .iter()
        .all(|v| v.line == 2 && v.stop.as_deref() == Some("s")));
    assert_eq!(r.violations[0].violation.invariant, 3);
}

#[test]
fn unusable_line_stops_with_its_number_and_keeps_what_came_before() {
    let bad = line(SNAP).replacen(r#""cpu":1,"#, "", 1);
    let r = check_text(&format!("{}\n{}\n{}\n", line(SNAP), bad, line(SNAP)), None, true);
    assert_eq!(r.exit_code(), 2);
    assert_eq!(r.snapshots, 1);
    let e = r.error.unwrap();
    assert_eq!((e.line, e.key.as_str()), (Some(2), "threads[1].cpu"));
}

#[test]
fn large_traces_parse_in_parallel_and_keep_line_order() {
    let good = line(SNAP);
    let bad_ptid = good.replace(r#""ptid":1"#, r#""ptid":3"#);
    let broken = good.replacen(r#""cpu":1,"#, "", 1);
    let mut lines: Vec<String> = (1..=5000).map(|_| good.clone()).collect();
    lines[499] = bad_ptid; // line 500
    lines[1999] = String::new(); // blank line 2000
    lines[4199] = broken; // line 4200, in the second batch
    let r = check_text(&lines.join("\n"), None, true);
    assert_eq!(r.snapshots, 4198);
    assert_eq!(r.error.as_ref().and_then(|e| e.line), Some(4200));
    assert_eq!(r.violations.iter().map(|v| v.line).collect::<Vec<_>>(), vec![500]);
}

#[test]
fn replayer_variant_override() {
    let mut rp = Replayer::new(Some(Variant::Seed));
    assert!(rp.push_text(&line(SNAP), Some(1)).unwrap().is_empty());
    assert!(rp.push_text("{}", Some(2)).is_err());
    rp.reset();
}
