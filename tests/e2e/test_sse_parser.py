"""The page's SSE parser (static/js/sse.js), run in the browser: the same events wherever the
byte stream is cut, CRLF/LF/CR line ends, comments, multi-line data, UTF-8 split mid-character."""

from __future__ import annotations

import pytest
from tests.e2e.support import Page

pytestmark = pytest.mark.e2e

SCRIPT = """
async () => {
  const { SSEParser } = await import('/static/js/sse.js');
  const text = 'id: 1\\r\\nevent: content\\r\\ndata: {"content":"h\\u00e9llo \\ud83c\\udf0d"}\\r\\n\\r\\n'
    + ': ping\\n\\nid:2\\nevent: content\\ndata: line one\\ndata:line two\\n\\r'
    + 'data: [DONE]\\r\\rdata: never dispatched';
  const bytes = new TextEncoder().encode(text);
  const parse = (chunks) => {
    const parser = new SSEParser();
    const out = [];
    for (const chunk of chunks) out.push(...parser.feed(chunk));
    out.push(...parser.end());
    return JSON.stringify(out);
  };
  const whole = parse([bytes]);
  const cuts = [];
  for (let i = 0; i <= bytes.length; i++) cuts.push(parse([bytes.slice(0, i), bytes.slice(i)]));
  const single = parse([...bytes].map((b) => new Uint8Array([b])));
  return { whole: JSON.parse(whole), cuts: cuts.every((c) => c === whole), single: single === whole };
}
"""


async def test_events_are_the_same_wherever_the_stream_is_cut(page: Page) -> None:
    result = await page.evaluate(SCRIPT)
    assert result["whole"] == [
        {"id": "1", "event": "content", "data": '{"content":"héllo 🌍"}'},
        {"id": "2", "event": "content", "data": "line one\nline two"},
        {"id": None, "event": "message", "data": "[DONE]"},
    ]
    assert result["cuts"] is True
    assert result["single"] is True
