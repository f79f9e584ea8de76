"""The pure outcome -> status mapping."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edgenode.sandbox import Outcome, Status, classify


def test_return_and_exit_zero_are_ok() -> None:
    assert classify(Outcome()) == (Status.OK, 0, None)
    assert classify(Outcome(exit_code=0)) == (Status.OK, 0, None)


def test_nonzero_exit_keeps_its_code() -> None:
    assert classify(Outcome(exit_code=7)) == (Status.EXIT, 7, None)


def test_output_cap_wins_over_the_fuel_drain_that_stops_a_flood() -> None:
    status, _, _ = classify(Outcome(trap_kind="out_of_fuel", output_over=True))
    assert status is Status.OUTPUT_LIMIT


def test_fuel_and_deadline() -> None:
    assert classify(Outcome(trap_kind="out_of_fuel"))[0] is Status.OUT_OF_FUEL
    assert classify(Outcome(trap_kind="interrupt"))[0] is Status.DEADLINE


def test_failure_at_the_memory_cap_is_memory_limit_but_success_is_not() -> None:
    assert classify(Outcome(trap_kind="unreachable", memory_at_cap=True))[0] is Status.MEMORY_LIMIT
    assert classify(Outcome(exit_code=1, memory_at_cap=True))[0] is Status.MEMORY_LIMIT
    assert classify(Outcome(exit_code=0, memory_at_cap=True))[0] is Status.OK


def test_traps_and_instantiation_failures() -> None:
    assert classify(Outcome(trap_kind="stack_overflow")) == (Status.TRAP, -1, "stack_overflow")
    assert classify(Outcome(instantiate_error="forbidden import env.x"))[0] is Status.INVALID_MODULE
    assert classify(Outcome(instantiate_error="memory too big", memory_refused=True))[0] is Status.MEMORY_LIMIT


@given(
    exit_code=st.none() | st.integers(-(2**31), 2**31 - 1),
    trap=st.none() | st.sampled_from(["out_of_fuel", "interrupt", "unreachable", "stack_overflow"]),
    over=st.booleans(),
    at_cap=st.booleans(),
)
def test_classify_is_total_and_exit_code_is_consistent(
    exit_code: int | None, trap: str | None, over: bool, at_cap: bool
) -> None:
    status, code, detail = classify(
        Outcome(exit_code=exit_code, trap_kind=trap, output_over=over, memory_at_cap=at_cap)
    )
    assert isinstance(status, Status)
    if status is Status.OK:
        assert code == 0 and detail is None
    if status is Status.EXIT:
        assert code == exit_code and code != 0
    if status in (Status.OUT_OF_FUEL, Status.DEADLINE, Status.OUTPUT_LIMIT, Status.TRAP):
        assert code == -1 and detail
