import math

import pytest

from mtl_core.scores import (
    Interval,
    delta_m,
    delta_m_per_seed,
    mean_ci,
    paired_difference,
    pareto_mask,
    rank_levels,
    verdict,
)


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


# ------------------------------------------------------------------ intervals (hand-made numbers)
# t quantiles from a printed table: t(0.975, 2) = 4.303, t(0.95, 2) = 2.920, t(0.975, 4) = 2.776


def test_mean_ci_of_one_two_three_matches_the_t_table():
    ci = mean_ci([1, 2, 3])
    # s = 1, so the half-width is t(0.975, 2) / sqrt(3) = 4.303 * 0.5774 = 2.484
    assert (ci.mean, ci.n, ci.std) == (pytest.approx(2.0), 3, pytest.approx(1.0))
    assert ci.half_width == pytest.approx(2.484, abs=1e-3)
    assert (ci.low, ci.high) == (pytest.approx(-0.484, abs=1e-3), pytest.approx(4.484, abs=1e-3))
    assert ci.contains(0.0) and not ci.contains(4.5)
    assert str(ci) == "2.0 ± 2.5"
    # a 90 % interval is narrower: 2.920 * 0.5774 = 1.686
    assert mean_ci([1, 2, 3], confidence=0.90).half_width == pytest.approx(1.686, abs=1e-3)


def test_one_seed_says_nothing_about_spread_and_failed_runs_are_dropped():
    one = mean_ci([0.7])
    assert (one.mean, one.n, one.low, one.high) == (pytest.approx(0.7), 1, -math.inf, math.inf)
    assert one.contains(-1e9) and one.contains(1e9)
    # NaN (a diverged run) and None (a missing one) are left out, not counted as zero
    kept = mean_ci([1, float("nan"), 2, None, 3])
    assert (kept.n, kept.mean) == (3, pytest.approx(2.0))
    assert kept.half_width == pytest.approx(2.484, abs=1e-3)
    none = mean_ci([None, float("nan")])
    assert none.n == 0 and math.isnan(none.mean) and not none.contains(0.0)
    assert str(none) == "no values"


def test_a_confidence_given_in_percent_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="use 0.95"):
        mean_ci([1, 2, 3], confidence=95)


def test_interval_text_keeps_two_significant_digits_of_the_half_width():
    assert str(Interval(0.8123, 0.7989, 0.8257, 5, 0.01)) == "0.812 ± 0.013"
    assert str(Interval(4.137, 4.137 - 1.29, 4.137 + 1.29, 5, 1.0)) == "4.1 ± 1.3"
    # 0.0996 rounds up to 0.10: two significant digits, not three
    assert str(Interval(1.23456, 1.23456 - 0.0996, 1.23456 + 0.0996, 5, 0.1)) == "1.23 ± 0.10"
    assert str(Interval(-0.001, -0.5, 0.498, 5, 0.4)) == "0.00 ± 0.50"
    # every seed gained the same 2.1 up to float rounding: no 17-decimal noise
    assert str(paired_difference({1: 10.1, 2: 10.3, 3: 0.7}, {1: 8.0, 2: 8.2, 3: -1.4})) == "2.1 ± 0"


def test_pairing_by_seed_separates_levels_whose_own_intervals_overlap():
    # every seed gains 1.0, 1.2 or 0.8 from a to b, but seeds differ by far more than that
    a = {1: 10.0, 2: 12.0, 3: 14.0, 4: 100.0}  # seed 4 has no partner and is ignored
    b = {1: 9.0, 2: 10.8, 3: 13.2, 5: 0.0}
    ia, ib = mean_ci([10.0, 12.0, 14.0]), mean_ci(b[s] for s in (1, 2, 3))
    assert ia.low < ib.high and ib.low < ia.high  # the unpaired intervals overlap widely
    d = paired_difference(a, b)
    # differences 1.0, 1.2, 0.8: mean 1.0, s = 0.2, half-width 4.303 * 0.2 / sqrt(3) = 0.497
    assert (d.n, d.mean, d.std) == (3, pytest.approx(1.0), pytest.approx(0.2))
    assert d.half_width == pytest.approx(0.497, abs=1e-3)
    assert not d.contains(0.0) and d.low > 0


def test_a_pair_with_a_failed_run_is_left_out():
    d = paired_difference({1: 2.0, 2: float("nan"), 3: 4.0}, {1: 1.0, 2: 1.0, 3: 1.0})
    assert (d.n, d.mean) == (2, pytest.approx(2.0))


def test_delta_m_per_seed_against_the_same_seeds_baselines():
    higher = {"cls": True, "depth": False}
    metrics = {1: {"cls": 0.88, "depth": 0.18},   # +10 % accuracy, abs_rel 0.20 -> 0.18 is +10 %: Δm 10
               2: {"cls": 0.75, "depth": 0.33},   # accuracy unchanged, abs_rel 0.30 -> 0.33 is -10 %: Δm -5
               3: {"cls": 0.99, "depth": 0.01}}   # no baseline trained with seed 3
    baselines = {1: {"cls": 0.80, "depth": 0.20}, 2: {"cls": 0.75, "depth": 0.30}, 4: {"cls": 0.5, "depth": 0.5}}
    out = delta_m_per_seed(metrics, baselines, higher)
    assert list(out) == [1, 2]
    assert out[1] == pytest.approx(10.0) and out[2] == pytest.approx(-5.0)


# ------------------------------------------------------------------------------ ranking and verdict

# nash_mtl is clearly best; cagrad and pcgrad swap places from seed to seed
STUDY = {"pcgrad": {1: 5.0, 2: 6.5, 3: 7.0},     # mean 6.167
         "nash_mtl": {1: 10.0, 2: 11.0, 3: 12.0},  # mean 11.0
         "cagrad": {1: 5.5, 2: 6.0, 3: 7.2}}     # mean 6.233


def test_rank_levels_shares_a_rank_between_levels_that_cannot_be_told_apart():
    ranked = rank_levels(STUDY)
    assert [r.label for r in ranked] == ["nash_mtl", "cagrad", "pcgrad"]
    assert [r.rank for r in ranked] == [1, 2, 2]
    assert [r.tied_with for r in ranked] == [(), ("pcgrad",), ("cagrad",)]
    assert ranked[0].beats == ("cagrad", "pcgrad")
    # nash_mtl - cagrad per seed: 4.5, 5.0, 4.8 -> mean 4.767, s = 0.2517, half-width 4.303 * 0.2517 / sqrt(3)
    d = ranked[0].differences["cagrad"]
    assert d.mean == pytest.approx(4.767, abs=1e-3) and d.half_width == pytest.approx(0.625, abs=1e-3)
    # cagrad - pcgrad per seed: 0.5, -0.5, 0.2: the interval straddles 0
    assert ranked[1].differences["pcgrad"].contains(0.0)


def test_lower_is_better_reverses_the_order_not_the_ties():
    flipped = {k: {s: -v for s, v in seeds.items()} for k, seeds in STUDY.items()}
    ranked = rank_levels(flipped, higher_is_better=False)
    assert [(r.label, r.rank) for r in ranked] == [("nash_mtl", 1), ("cagrad", 2), ("pcgrad", 2)]


def test_verdict_states_the_winner_the_margin_and_the_ties():
    text = verdict(rank_levels(STUDY))
    assert text == "nash_mtl beats cagrad on Δm by 4.77 ± 0.63 points over 3 seeds; " \
                   "cagrad and pcgrad cannot be told apart."
    assert "5 seeds" in verdict(rank_levels(STUDY), seeds=5)
    assert "by 4.77 ± 0.63 over 3 seeds" in verdict(rank_levels(STUDY), metric="accuracy", unit="")


def test_verdict_when_nothing_can_be_told_apart_or_there_is_one_level():
    noisy = {"ew": {1: 1.0, 2: 2.0, 3: 3.0}, "pcgrad": {1: 1.5, 2: 1.8, 3: 3.3}, "cagrad": {1: 0.9, 2: 2.5, 3: 2.1}}
    ranked = rank_levels(noisy)
    assert [r.rank for r in ranked] == [1, 1, 1]
    assert verdict(ranked) == "at 3 seeds, none of pcgrad, ew, cagrad can be told apart on Δm."
    assert verdict(rank_levels({"ew": {1: 1.0, 2: 2.0, 3: 3.0}}), metric="accuracy", unit="%") == \
        "only ew so far: accuracy 2.0 ± 2.5 % over 3 seeds, nothing to compare it with."


def test_levels_without_shared_seeds_fall_back_to_welch():
    far = rank_levels({"a": {1: 10.0, 2: 11.0, 3: 12.0}, "b": {4: 1.0, 5: 2.0, 6: 3.0}})
    assert [(r.label, r.rank) for r in far] == [("a", 1), ("b", 2)]
    # Welch: difference 9, standard error sqrt(1/3 + 1/3) = 0.8165, df 4, t(0.975, 4) = 2.776 -> 2.267
    assert far[0].differences["b"].half_width == pytest.approx(2.267, abs=1e-3)
    near = rank_levels({"a": {1: 1.0, 2: 2.0, 3: 3.0}, "b": {4: 1.5, 5: 2.5, 6: 3.5}})
    assert [r.rank for r in near] == [1, 1]


def test_a_level_whose_runs_all_failed_comes_last_and_is_said_so():
    ranked = rank_levels({"ew": {1: float("nan")}, **STUDY})
    assert (ranked[-1].label, ranked[-1].rank, ranked[-1].tied_with) == ("ew", 4, ())
    assert verdict(ranked).endswith("; no finished seed yet for ew.")


# ------------------------------------------------------------------------------------------- Pareto

def test_pareto_front_in_two_objectives_accuracy_up_error_down():
    points = [(0.90, 0.30),          # front: best accuracy
              (0.80, 0.20),          # front: lowest error
              (0.80, 0.20),          # a duplicate: equal points do not dominate each other
              (0.85, 0.35),          # dominated by the first (worse on both)
              (0.70, 0.20),          # dominated by (0.80, 0.20): equal error, lower accuracy
              (float("nan"), 0.10)]  # never on the front
    assert pareto_mask(points, [True, False]) == [True, True, True, False, False, False]


def test_pareto_front_in_three_objectives_with_mixed_directions():
    maximize = [True, False, True]
    points = [(1, 1, 1),             # dominated by (2, 1, 1)
              (2, 1, 1),             # front
              (0, 0, 0),             # front: the only one with objective 2 at 0
              (2, 2, 3),             # front: the best objective 3
              (2, 2, 2),             # dominated by (2, 2, 3)
              (5, float("nan"), 5)]  # would dominate (2, 2, 3) were it not NaN; dominates nothing
    assert pareto_mask(points, maximize) == [False, True, True, True, False, False]
    assert pareto_mask([], maximize) == []
    with pytest.raises(ValueError, match="point 1 has 2 values but maximize has 3"):
        pareto_mask([(1, 2, 3), (1, 2)], maximize)
