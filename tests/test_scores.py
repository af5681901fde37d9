import pytest

from mtl_core.scores import delta_m


def test_ten_percent_better_and_ten_percent_worse_cancel():
    # accuracy 0.8 -> 0.88 is +10 %; abs_rel 0.2 -> 0.22 (lower is better) is -10 %
    assert delta_m({"cls": 0.88, "depth": 0.22}, {"cls": 0.8, "depth": 0.2},
                   {"cls": True, "depth": False}) == pytest.approx(0.0)


def test_lower_is_better_gains_count_positive():
    assert delta_m({"depth": 0.15}, {"depth": 0.2}, {"depth": False}) == pytest.approx(25.0)


def test_only_shared_tasks_with_a_usable_baseline_count():
    assert delta_m({"a": 0.5, "b": 0.9}, {"a": 0.25, "b": 0.0}, {"a": True, "b": True}) == pytest.approx(100.0)
    assert delta_m({"a": 0.5}, {"c": 0.5}, {"a": True, "c": True}) is None
    assert delta_m({"a": float("nan")}, {"a": 0.5}, {"a": True}) is None
