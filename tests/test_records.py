from r1distill.core.records import Sample, parse_completion, sample_id


def test_parse_well_formed():
    p = parse_completion("<think>\nstep 1\nstep 2\n</think>\n\nThe answer is 4.")
    assert (p.reasoning, p.answer, p.closed, p.n_open, p.n_close) == ("step 1\nstep 2", "The answer is 4.", True, 1, 1)


def test_parse_truncated_has_no_answer():
    p = parse_completion("<think>\nI keep thinking")
    assert p.has_think and not p.closed and p.answer == "" and p.reasoning == "I keep thinking"


def test_parse_without_opening_tag_as_some_servers_return():
    p = parse_completion("reasoning here</think>final")
    assert (p.reasoning, p.answer, p.closed) == ("reasoning here", "final", True)


def test_parse_no_think_at_all_is_all_answer():
    p = parse_completion("just 42")
    assert not p.has_think and p.answer == "just 42" and p.reasoning == ""


def test_parse_counts_extra_blocks():
    p = parse_completion("<think>a</think>b<think>c</think>d")
    assert (p.n_open, p.n_close, p.reasoning, p.answer) == (2, 2, "a", "b<think>c</think>d")


def test_sample_roundtrip_and_derived_fields():
    s = Sample(
        id=sample_id("src", 3, 1),
        source="src",
        row="3",
        k=1,
        domain="math",
        problem="1+1?",
        messages=[{"role": "user", "content": "1+1?"}],
        reference="2",
        completion="<think>\nadd\n</think>\n\n2",
        meta={"finish_reason": "stop"},
    )
    import json

    back = Sample.from_dict(json.loads(s.to_json()))
    assert back == s and back.id == "src/3/1" and back.answer == "2" and back.finish_reason == "stop"
