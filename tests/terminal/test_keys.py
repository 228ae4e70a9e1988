"""Ctrl+C while a reply streams: at once during a wait, held during a write."""

from __future__ import annotations

import os
import signal

import pytest

from parley.terminal.keys import Interrupts


def press_ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)  # the handler runs before the next bytecode


def test_ctrl_c_during_a_write_is_held_until_the_next_wait() -> None:
    keys = Interrupts()
    before = signal.getsignal(signal.SIGINT)
    with keys:
        press_ctrl_c()  # not waiting: writing, say
        assert keys.pending
        with pytest.raises(KeyboardInterrupt), keys.wait():
            pytest.fail("the wait began although Ctrl+C was pressed")
        assert not keys.pending
        with keys.wait():
            pass  # held once, raised once
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_during_a_wait_interrupts_it() -> None:
    keys = Interrupts()
    with keys, pytest.raises(KeyboardInterrupt), keys.wait():
        press_ctrl_c()
        pytest.fail("Ctrl+C did not interrupt the wait")
    assert not keys.waiting
