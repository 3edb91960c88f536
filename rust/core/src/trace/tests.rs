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

/// Snapshots of the model's modern run at N = 2 after each event: each
/// judged (a vcore), clean, one per line.
fn model_lines() -> Vec<String> {
    let mut m = crate::model::Model::new(Variant::Modern, 2).unwrap();
    let mut out = vec![serde_json::to_string(m.snapshot()).unwrap()];
    for e in [
        "create_vcpu(vcpu=0)",
        "create_vcpu(vcpu=1)",
        "runnable(vcpu=0)",
        "run_core(runner=0)",
        "start_thread(vcpu=0)",
        "vcore_entry",
        "enter(thread=0)",
        "switch_in",
    ] {
        m.apply_text(e).unwrap();
        out.push(serde_json::to_string(m.snapshot()).unwrap());
    }
    out
}

#[test]
fn a_stop_pv_watch_could_not_read_is_counted_and_leaves_the_trace_not_judged() {
    let lines = model_lines();
    let clean = check_text(&(lines[1..].join("\n") + "\n"), None, true);
    assert_eq!(
        (clean.verdict(), clean.exit_code(), clean.unread),
        ("clean", 0, 0)
    );
    let unread = r#"{"stop": "kvmppc_run_core", "error": "Cannot access memory at address 0x10"}"#;
    let mut with = lines[1..].to_vec();
    with.insert(2, unread.to_string());
    with.insert(4, unread.replace("kvmppc_run_core", "kvmhv_commence_exit"));
    let r = check_text(&(with.join("\n") + "\n"), None, true);
    assert_eq!(r.error, None);
    assert_eq!((r.snapshots, r.unread, r.not_judged), (lines.len() - 1, 2, 0));
    assert_eq!((r.verdict(), r.exit_code()), ("not judged", 2));
    let (line, first) = r.first_unread.clone().unwrap();
    assert_eq!((line, first.stop.as_str()), (3, "kvmppc_run_core"));
    assert_eq!(first.error, "Cannot access memory at address 0x10");
    // Only unread stops: not an empty trace, and not clean either.
    let only = check_text(&format!("{unread}\n"), None, false);
    assert_eq!(
        (only.verdict(), only.exit_code(), only.snapshots),
        ("not judged", 2, 0)
    );
    // A violation still makes the verdict.
    let bad = lines[2].replacen(r#""ptid":1"#, r#""ptid":3"#, 1);
    let r = check_text(&format!("{unread}\n{bad}\n"), None, false);
    assert_eq!((r.verdict(), r.exit_code()), ("violations", 1));
}

#[test]
fn a_stop_pv_watch_could_not_read_cuts_the_comparison_of_the_stops_around_it() {
    // Same VM, the two vcpus' addresses swapped between two stops (each
    // stop fine alone): check_step flags the vcpu at an address changing
    // its vcpu_id when they are compared, and an unread stop between them
    // means they are not.
    let lines = model_lines();
    let mut snap: Snapshot = serde_json::from_str(&lines[3]).unwrap();
    let (a, b) = (snap.vcpus[0].addr, snap.vcpus[1].addr);
    (snap.vcpus[0].addr, snap.vcpus[1].addr) = (b, a);
    let moved = serde_json::to_string(&snap).unwrap();
    let compared = check_text(&format!("{}\n{moved}\n", lines[2]), None, true);
    assert_eq!(compared.verdict(), "violations", "{:?}", compared.groups);
    let unread = r#"{"stop": "kvmppc_run_core", "error": "gdb: the target is running"}"#;
    let cut = check_text(&format!("{}\n{unread}\n{moved}\n", lines[2]), None, true);
    let alone = check_text(&format!("{moved}\n"), None, true);
    let numbers = |r: &TraceReport| r.groups.iter().map(|g| g.invariant).collect::<Vec<_>>();
    assert!(
        numbers(&compared).len() > numbers(&alone).len(),
        "{:?}",
        compared.groups
    );
    assert_eq!(numbers(&cut), numbers(&alone));
}

#[test]
fn a_line_only_like_an_unread_stop_is_refused_as_a_snapshot() {
    for text in [
        r#"{"stop": "x", "error": 5}"#,
        r#"{"stop": "x", "error": "e", "cpu": 3}"#,
        r#"{"error": "e"}"#,
    ] {
        let r = check_text(&format!("{text}\n"), None, false);
        let e = r.error.unwrap_or_else(|| panic!("{text} was accepted"));
        assert_eq!(e.line, Some(1), "{text}");
        assert_eq!(r.unread, 0);
    }
}
