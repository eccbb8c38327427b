"""The collector's threads stay on one CPU while they collect, and the CPUs are given back after."""

from __future__ import annotations

import os
import threading

import pytest

from collector import cpu

needs_two_cpus = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and at least two CPUs to choose from",
)


def cpus_of_a_thread_started_here() -> set[int]:
    seen: dict[str, set[int]] = {}
    thread = threading.Thread(target=lambda: seen.update(cpus=os.sched_getaffinity(0)))
    thread.start()
    thread.join()
    return seen["cpus"]


@needs_two_cpus
def test_the_current_cpu_is_one_the_thread_may_run_on() -> None:
    assert cpu.current_cpu() in os.sched_getaffinity(0)


@needs_two_cpus
def test_inside_the_block_the_thread_and_the_threads_it_starts_run_on_the_cpu_it_was_on() -> None:
    before = os.sched_getaffinity(0)
    with cpu.one_cpu() as chosen:
        assert chosen in before
        assert os.sched_getaffinity(0) == {chosen}
        assert cpus_of_a_thread_started_here() == {chosen}
        assert cpu.current_cpu() == chosen
    assert os.sched_getaffinity(0) == before
    assert cpus_of_a_thread_started_here() == before


@needs_two_cpus
def test_the_cpus_are_given_back_when_the_block_is_interrupted() -> None:
    before = os.sched_getaffinity(0)
    with pytest.raises(KeyboardInterrupt), cpu.one_cpu():
        raise KeyboardInterrupt
    assert os.sched_getaffinity(0) == before


@needs_two_cpus
def test_a_thread_already_confined_to_one_cpu_is_left_as_it_is() -> None:
    before = os.sched_getaffinity(0)
    only = max(before)
    os.sched_setaffinity(0, {only})  # as under 'taskset -c N collect ...'
    try:
        with cpu.one_cpu() as chosen:
            assert chosen is None and os.sched_getaffinity(0) == {only}
        assert os.sched_getaffinity(0) == {only}
    finally:
        os.sched_setaffinity(0, before)


def test_without_affinity_support_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "sched_setaffinity", raising=False)  # macOS, Windows
    with cpu.one_cpu() as chosen:
        assert chosen is None


@needs_two_cpus
def test_a_cpu_that_cannot_be_read_or_chosen_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    before = os.sched_getaffinity(0)
    with monkeypatch.context() as patch:
        patch.setattr(cpu, "current_cpu", lambda: None)  # no /proc
        with cpu.one_cpu() as chosen:
            assert chosen is None and os.sched_getaffinity(0) == before

    def refuse(pid: int, cpus: set[int]) -> None:
        raise OSError(22, "Invalid argument")  # a cpuset changed under the run

    monkeypatch.setattr(os, "sched_setaffinity", refuse)
    with cpu.one_cpu() as chosen:
        assert chosen is None and os.sched_getaffinity(0) == before
