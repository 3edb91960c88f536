use super::*;

const GOOD: &str = r#"{"variant":"modern","threads_per_core":2,"stop":"x",
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
            .starts_with("line 7, column 69: key `threads[0].kvm_hstate.ptid`: missing field"),
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
        &GOOD.replace("\"threads_per_core\":2", "\"threads_per_core\":0"),
        None,
        None,
    )
    .unwrap_err();
    assert_eq!(e.key, "threads_per_core");
    let e = parse_snapshot("[1,2]", Some(3), None).unwrap_err();
    assert_eq!(e.key, "");
    assert_eq!(e.message, "a snapshot is a JSON object, not an array");
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
