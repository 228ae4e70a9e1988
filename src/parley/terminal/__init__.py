"""``parley chat``: a terminal client over the native API.

It streams replies as they are made and renders their markdown with rich (``output.py``), shows
tool calls with a spinner while they run, asks y/n for approvals, fills a tool's questions
(elicitations) field by field (``forms.py``), and resumes a dropped stream from its last event id
(``chat.py``). Commands: ``/new``, ``/list``, ``/switch ID``, ``/stop``, ``/quit``.
"""

from parley.terminal.chat import run_chat

__all__ = ["run_chat"]
