"""Property tests: random snapshots, mutated snapshots and random JSON never
crash the checker (no panic across FFI); bad input is a SnapshotError that
names a key."""

from __future__ import annotations

import json
import re

import checker_states as cs
from hypothesis import given, settings
from hypothesis import strategies as st

from pyvcore import Checker, SnapshotError
from pyvcore.checker import INVARIANTS, check_trace_text

u8 = st.integers(0, 255)
ptr = st.sampled_from([0, cs.VCORE, cs.VCORE + 0x1000] + [cs.vcpu_addr(i) for i in range(5)]) | st.integers(
    0, 2**64 - 1
)
small = st.integers(0, 9)

hstate = st.fixed_dictionaries(
    {
        "kvm_vcpu": ptr,
        "kvm_vcore": ptr,
        "ptid": u8,
        "hwthread_req": u8,
        "hwthread_state": u8,
        "napping": u8,
        "in_guest": u8,
    }
)
thread = st.fixed_dictionaries(
    {"cpu": small, "hw_cpu_id": st.integers(0, 2**32 - 1), "kvm_hstate": hstate},
    optional={"lpidr": st.integers(0, 2**64 - 1), "sdr1": st.integers(0, 2**64 - 1)},
)
vcore = st.fixed_dictionaries(
    {
        "addr": ptr,
        "first_vcpuid": small,
        "pcpu": small,
        "num_threads": small,
        "n_runnable": small,
        "vcore_state": u8,
        "in_guest": u8,
        "napping_threads": st.integers(0, 2**32 - 1),
    },
    optional={
        "entry_exit_map": st.integers(0, 2**32 - 1),
        "entry_exit_count": st.integers(0, 2**32 - 1),
        "runner": ptr,
        "n_woken": small,
        "nap_count": small,
        "kvm": ptr,
    },
)
vcpu = st.fixed_dictionaries(
    {"addr": ptr, "vcpu_id": small, "vcore": ptr, "ptid": u8, "cpu": st.integers(-(2**31), 2**31 - 1)},
    optional={"thread_cpu": st.integers(-(2**31), 2**31 - 1), "state": u8, "ceded": u8},
)
snapshot = st.integers(1, 8).flatmap(
    lambda n: st.fixed_dictionaries(
        {
            "variant": st.sampled_from(["seed", "modern", "prepatch"]),
            "threads_per_core": st.just(n),
            # each cpu once (a cpu listed twice is refused)
            "threads": st.lists(thread, min_size=1, max_size=n, unique_by=lambda t: t["cpu"]),
        },
        optional={
            "vcores": st.lists(vcore, max_size=3),
            "vcpus": st.lists(vcpu, max_size=8),
            "stop": st.text(max_size=10),
            "kvm": st.fixed_dictionaries(
                {"lpid": st.integers(0, 2**64 - 1), "sdr1": st.integers(0, 2**64 - 1)},
                optional={"host_lpid": st.integers(0, 2**64 - 1)},
            ),
        },
    )
)


@settings(max_examples=300, deadline=None)
@given(st.lists(snapshot, min_size=1, max_size=4))
def test_random_snapshots_give_numbered_violations(snaps):
    checker = Checker()
    for s in snaps:
        for v in checker.check(s):
            assert v.invariant in INVARIANTS
            assert v.message and isinstance(v.fields, dict)
            json.dumps(v.to_dict())
        rows = checker.predict(s)
        assert len(rows) == len(s["threads"])


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_random_json_is_rejected_cleanly(value):
    try:
        Checker().check(json.dumps(value))
    except SnapshotError as e:
        assert str(e)
        assert isinstance(e.key, str)


def _paths(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{prefix}.{k}" if prefix else k
            yield p, obj, k
            yield from _paths(v, p)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, f"{prefix}[{i}]")


OPTIONAL = re.compile(
    r"^(stop|vcores|vcpus|kvm|kvm\.host_lpid|kvm\.host_sdr1|threads\[\d+\]\.(lpidr|sdr1)"
    r"|vcores\[\d+\]\.(entry_exit_map|entry_exit_count|runner|n_woken|nap_count|kvm)"
    r"|vcpus\[\d+\]\.(thread_cpu|state|ceded))$"
)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(cs.MUST_ACCEPT)), st.data())
def test_deleting_a_key_names_it_or_is_harmless(name, data):
    s = cs.MUST_ACCEPT[name]()
    path, parent, key = data.draw(st.sampled_from(list(_paths(s))))
    del parent[key]
    try:
        Checker().check(s, line=3)
    except SnapshotError as e:
        assert not OPTIONAL.match(path), (path, str(e))
        assert e.key == path and e.line == 3, (e.key, path)
    else:
        assert OPTIONAL.match(path), path


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(cs.MUST_ACCEPT)),
    st.data(),
    st.sampled_from(["x", -1, 1.5, [], {}, None, True, 2**64]),
)
def test_wrong_type_names_the_key(name, data, bad):
    s = cs.MUST_ACCEPT[name]()
    leaves = [
        (p, parent, k)
        for p, parent, k in _paths(s)
        if isinstance(parent[k], int) and not isinstance(parent[k], bool)
    ]
    path, parent, key = data.draw(st.sampled_from(leaves))
    parent[key] = bad
    try:
        Checker().check(s)
    except SnapshotError as e:
        # a cpu changed to another thread's number: the refusal names both listings
        listing = path.removesuffix(".cpu")
        twice = key == "cpu" and (f"({listing} and" in e.reason or f"and {listing})" in e.reason)
        assert e.key == path or twice, (e.key, path, str(e))
    # Some replacements are valid (e.g. -1 for a signed cpu, None for an optional key).


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=40) | snapshot.map(json.dumps), max_size=5))
def test_random_traces_report_instead_of_crashing(lines):
    report = check_trace_text("\n".join(line.replace("\n", " ") for line in lines))
    assert report.exit_code in (0, 1, 2)
    if report.error is not None:
        assert report.error["line"] is None or report.error["line"] >= 1
