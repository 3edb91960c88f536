use super::*;

const GOOD: &str = r#"{"variant":"modern","threads_per_core":1,"stop":"x",
        "threads":[{"cpu":0,"hw_cpu_id":8,"kvm_hstate":{"kvm_vcpu":0,"kvm_vcore":0,"ptid":0,
        "hwthread_req":0,"hwthread_state":0,"napping":0,"in_guest":0}}],"extra":1}"#;

#[test]
fn parses_and_ignores_unknown_keys() {
    let s = parse_snapshot(GOOD, Some(1), None).unwrap();
    assert_eq!(s.threads.len(), 1);
    assert_eq!(s.stop.as_deref(), Some("x"));
}

#[test]
fn missing_key_names_the_path_and_line() {
    let text = GOOD.replace("\"ptid\":0,", "");
    let e = parse_snapshot(&text, Some(7), None).unwrap_err();
    assert_eq!(e.key, "threads[0].kvm_hstate.ptid");
    assert_eq!(e.line, Some(7));
    assert!(
        e.to_string()
            .starts_with("7:69: key `threads[0].kvm_hstate.ptid`: missing field"),
        "{e}"
    );
    assert!(
        e.located("t.jsonl")
            .starts_with("t.jsonl:7:69: key `threads[0].kvm_hstate.ptid`: missing field"),
        "{e}"
    );
}

#[test]
fn wrong_type_names_the_key() {
    let text = GOOD.replace("\"hwthread_req\":0", "\"hwthread_req\":\"one\"");
    let e = parse_snapshot(&text, Some(2), None).unwrap_err();
    assert_eq!(e.key, "threads[0].kvm_hstate.hwthread_req");
    assert!(e.message.contains("invalid type"), "{}", e.message);
    let text = GOOD.replace("\"hwthread_req\":0", "\"hwthread_req\":300");
    assert_eq!(
        parse_snapshot(&text, None, None).unwrap_err().key,
        "threads[0].kvm_hstate.hwthread_req"
    );
}

#[test]
fn bad_variant_and_shape() {
    let e = parse_snapshot(&GOOD.replace("\"modern\"", "\"p8\""), None, None).unwrap_err();
    assert_eq!(e.key, "variant");
    let e = parse_snapshot(
        &GOOD.replace("\"threads_per_core\":1", "\"threads_per_core\":0"),
        None,
        None,
    )
    .unwrap_err();
    assert_eq!(e.key, "threads_per_core");
    let e = parse_snapshot("[1,2]", Some(3), None).unwrap_err();
    assert_eq!(e.key, "");
    assert_eq!(e.message, "a snapshot is a JSON object, not an array");
    let e = parse_snapshot("null", Some(3), None).unwrap_err();
    assert_eq!(e.message, "a snapshot is a JSON object, not null");
    // Text that only starts like a value is not JSON, at a column: not "null" or "an array".
    for text in ["not json", "[1,", "nul"] {
        let e = parse_snapshot(text, Some(3), None).unwrap_err();
        assert!(e.message.starts_with("not valid JSON"), "{text}: {}", e.message);
        assert!(e.column.is_some(), "{text}: {e:?}");
    }
    let e = parse_snapshot("{\"variant\":", Some(3), None).unwrap_err();
    assert!(e.message.starts_with("not valid JSON"), "{}", e.message);
    assert!(parse_snapshot(&format!("{GOOD} x"), None, None).is_err());
}

#[test]
fn variant_override_supplies_a_missing_variant() {
    let text = GOOD.replace("\"variant\":\"modern\",", "");
    assert_eq!(parse_snapshot(&text, None, None).unwrap_err().key, "variant");
    let s = parse_snapshot(&text, None, Some(Variant::Seed)).unwrap();
    assert_eq!(s.variant, Variant::Seed);
    let s = parse_snapshot(GOOD, None, Some(Variant::Prepatch)).unwrap();
    assert_eq!(s.variant, Variant::Prepatch);
}

/// A core of `tpc` threads, listed whole, with one vcore (at 0x100, thread 0
/// in it) and its vcpu (at 0x200, on thread 0): `edit` changes the JSON text.
fn core(tpc: u32, edit: impl Fn(&mut serde_json::Value)) -> Result<Snapshot, SnapshotError> {
    let thread = |cpu: u32, vcore: u64, vcpu: u64| {
        serde_json::json!({"cpu": cpu, "hw_cpu_id": cpu, "kvm_hstate": {"kvm_vcpu": vcpu,
            "kvm_vcore": vcore, "ptid": cpu, "hwthread_req": 1, "hwthread_state": 2,
            "napping": 0, "in_guest": 2}})
    };
    let mut threads = vec![thread(0, 0x100, 0x200)];
    threads.extend((1..tpc).map(|c| thread(c, 0, 0)));
    let mut v = serde_json::json!({"variant": "modern", "threads_per_core": tpc,
        "threads": threads,
        "vcores": [{"addr": 0x100, "first_vcpuid": 0, "pcpu": 0, "num_threads": 1,
            "n_runnable": 1, "vcore_state": 4, "in_guest": 1, "entry_exit_map": 1,
            "napping_threads": 0, "runner": 0x200}],
        "vcpus": [{"addr": 0x200, "vcpu_id": 0, "vcore": 0x100, "ptid": 0, "cpu": 0,
            "thread_cpu": 0, "state": 1, "ceded": 0}]});
    edit(&mut v);
    parse_snapshot(&v.to_string(), Some(4), None)
}

#[test]
fn a_stop_that_lacks_a_thread_of_its_core_is_not_judged_clean() {
    let ok = core(4, |_| {}).unwrap();
    assert!(absent_cpus(&ok).is_empty());
    assert!(!crate::invariants::check_outcome(&ok).judged.is_empty());
    // Thread 0 alone of a 4-thread core: what its vcore says of threads 1..3
    // (entered, napping, a vcpu's ptid) cannot be judged.
    let alone = core(4, |v| v["threads"].as_array_mut().unwrap().truncate(1)).unwrap();
    assert_eq!(absent_cpus(&alone), [1, 2, 3]);
    let o = crate::invariants::check_outcome(&alone);
    assert_eq!(
        (o.verdict(), o.judged.len(), o.absent_cpus.clone()),
        ("not judged", 0, vec![1, 2, 3])
    );
    assert!(o
        .not_judged
        .iter()
        .any(|(_, why)| *why == crate::invariants::THREAD_MISSING));
    // Two whole cores (a reader listing every cpu); then the second lacks cpu 7.
    let second = |keep: usize| {
        core(4, move |v| {
            let mut more = v["threads"].as_array().unwrap().clone();
            more.truncate(keep);
            for (k, t) in more.iter_mut().enumerate() {
                t["cpu"] = (4 + k).into();
                t["kvm_hstate"]["kvm_vcore"] = 0.into();
                t["kvm_hstate"]["kvm_vcpu"] = 0.into();
            }
            v["threads"].as_array_mut().unwrap().extend(more);
        })
        .unwrap()
    };
    assert!(absent_cpus(&second(4)).is_empty());
    assert_eq!(absent_cpus(&second(3)), [7]);
    let e = core(2, |v| v["threads"][1]["cpu"] = 0.into()).unwrap_err();
    assert_eq!(
        (e.key.as_str(), e.message.as_str()),
        (
            "threads[1].cpu",
            "cpu 0 is listed twice (threads[0] and threads[1])"
        )
    );
}

#[test]
fn a_stop_pointing_at_a_vcpu_or_vcore_it_lacks_is_not_judged_clean() {
    let ok = core(2, |_| {}).unwrap();
    assert!(unheld(&ok).is_empty());
    type Edit = fn(&mut serde_json::Value);
    let cases: [(Edit, &str); 3] = [
        (
            |v| v["threads"][0]["kvm_hstate"]["kvm_vcpu"] = 0x280.into(),
            "threads[0].kvm_hstate.kvm_vcpu -> vcpu 0x280",
        ),
        (
            |v| v["vcores"][0]["runner"] = 0x300.into(),
            "vcores[0].runner -> vcpu 0x300",
        ),
        (
            |v| v["threads"][1]["kvm_hstate"]["kvm_vcore"] = 0x400.into(),
            "threads[1].kvm_hstate.kvm_vcore -> vcore 0x400",
        ),
    ];
    for (edit, said) in cases {
        let s = core(2, edit).unwrap();
        assert_eq!(unheld(&s), [said]);
        let o = crate::invariants::check_outcome(&s);
        assert!(o.judged.is_empty() && o.unheld == [said], "{o:?}");
        assert!(o
            .not_judged
            .iter()
            .all(|(_, why)| *why == crate::invariants::POINTEE_MISSING || why.starts_with("no ")));
        assert_ne!(o.verdict(), "clean");
    }
}

/// A version-1 snapshot (no "version", or 1) is judged without the
/// version-2 fields; one that carries any is refused, naming the field.
#[test]
fn a_version_1_snapshot_with_a_version_2_field_is_refused() {
    type Edit = fn(&mut serde_json::Value);
    let cases: [(Edit, &str); 6] = [
        (|v| v["tb"] = "0x10".into(), "tb"),
        (|v| v["tb_freq"] = 512_000_000.into(), "tb_freq"),
        (|v| v["threads"][1]["msr"] = "0x1".into(), "threads[1].msr"),
        (|v| v["threads"][0]["hdec"] = 7.into(), "threads[0].hdec"),
        (|v| v["vcores"][0]["dpdes"] = 0.into(), "vcores[0].dpdes"),
        (
            |v| v["vcores"][0]["tb_offset_applied"] = 0.into(),
            "vcores[0].tb_offset_applied",
        ),
    ];
    for (edit, key) in cases {
        for version in [None, Some(1)] {
            let e = core(2, |v| {
                edit(v);
                if let Some(n) = version {
                    v["version"] = n.into();
                }
            })
            .unwrap_err();
            assert_eq!(e.key, key);
            assert!(
                e.message.contains("a version-2 field in a version-1 snapshot"),
                "{e}"
            );
            assert!(e.to_string().starts_with(&format!("4: key `{key}`")), "{e}");
        }
        let ok = core(2, |v| {
            edit(v);
            v["version"] = 2.into();
        });
        assert!(ok.is_ok(), "{key}: {ok:?}");
    }
    assert!(core(2, |_| {}).is_ok(), "a plain version-1 snapshot is read");
}
