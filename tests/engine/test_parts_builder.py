"""The parts a reply's events fold into: text and reasoning joined in order, tools in place."""

from __future__ import annotations

from parley.chat import events as ev
from parley.chat.messages import PartsBuilder


def test_deltas_fold_into_parts_in_order_whenever_the_parts_are_read() -> None:
    builder = PartsBuilder()
    builder.start_step()
    for piece in ("thinking ", "hard"):
        builder.apply(ev.ReasoningDelta(content=piece))
    for i in range(1000):
        builder.apply(ev.TextDelta(content=f"t{i} "))
        if i == 500:
            assert builder.parts[-1]["text"].endswith("t500 ")  # read mid-way: all so far
    builder.apply(ev.ToolCallReady(tool_call_id="c1", tool_name="lookup", args={"q": "x"}))
    builder.apply(ev.TextDelta(content="after"))
    builder.start_step()
    builder.apply(ev.TextDelta(content="next step"))

    parts = builder.parts
    assert [p["type"] for p in parts] == [
        "step-start", "reasoning", "text", "dynamic-tool", "text", "step-start", "text",
    ]  # fmt: skip
    assert parts[1]["text"] == "thinking hard"
    assert parts[2]["text"] == "".join(f"t{i} " for i in range(1000))
    assert parts[3]["input"] == {"q": "x"}
    assert (parts[4]["text"], parts[6]["text"]) == ("after", "next step")
    assert builder.text.startswith("t0 t1 ")


def test_a_builder_resumed_from_saved_parts_goes_on_after_them() -> None:
    saved = [{"type": "step-start"}, {"type": "text", "text": "before "}]
    builder = PartsBuilder(saved)
    builder.apply(ev.TextDelta(content="and after"))
    assert [p.get("text") for p in builder.parts] == [None, "before ", "and after"]
    assert saved[1]["text"] == "before "  # the saved parts are not changed
