"""The Gradient playground page, driven with Streamlit's AppTest: the paths and where they ended, the
state in the URL (and a damaged link that says what was wrong), a typed problem that does not
parse, and predict-then-reveal."""
from __future__ import annotations

from tests.ui.conftest import no_exceptions, page


def playground(**params: str):
    return page("playground", timeout=120, **params)


def _text(at) -> str:
    return " ".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [s.value for s in at.subheader])


def test_the_default_page_draws_cagrad_s_toy_and_where_every_path_ended():
    at = playground(steps="200")
    at.run()
    no_exceptions(at)
    assert at.subheader[0].value == "CAGrad's two-task toy"
    table = at.dataframe[0].value
    assert len(table) == 4 * 5 and list(table["method"].unique()) == ["ew", "mgda", "pcgrad", "cagrad"]
    assert "Nearest the average optimum" in _text(at) and "Liu et al." in _text(at)
    assert at.query_params["problem"] == "cagrad_toy" and at.query_params["steps"] == "200"


def test_a_link_holds_the_whole_state():
    at = playground(problem="three_bowls", methods="ew,mgda", steps="300", lr="0.05", opt="adam",
                    scales="1,1,2")
    at.query_params["starts"] = "-9,-2;8,8"
    at.run()
    no_exceptions(at)
    assert at.subheader[0].value.startswith("Three tasks")
    table = at.dataframe[0].value
    assert len(table) == 2 * 2 and table["start"].tolist()[0] == "1: (-9, -2)"
    assert at.query_params["scales"] == "1,1,2" and at.query_params["methods"] == "ew,mgda"
    mgda = table[table["method"] == "mgda"].iloc[0]
    assert mgda["end"] == "(-4, -3)" and mgda["on the Pareto set"] == "yes"  # a corner: MGDA stops at the first


def test_a_damaged_link_says_what_was_wrong_and_opens_the_default():
    at = playground(problem="nope", methods="ew,zzz", starts="abc", lr="-3", steps="100")
    at.run()
    no_exceptions(at)
    warnings = " ".join(w.value for w in at.warning)
    assert "no problem 'nope'" in warnings and "zzz" in warnings and "starts='abc'" in warnings and "lr=" in warnings
    assert at.subheader[0].value == "CAGrad's two-task toy" and set(at.dataframe[0].value["method"]) == {"ew"}


def test_a_typed_formula_that_does_not_parse_is_named_and_the_page_stays_up():
    at = playground(problem="typed", expr1="(x-1)**2 + y**2", expr2="open('/etc/passwd')")
    at.run()
    no_exceptions(at)
    assert at.error and "'open'" in at.error[0].value and "expressions[1]" in at.error[0].value
    at = playground(problem="typed", expr1="(x-1)**2 + y**2", expr2="(x+1)**2 + y**2", steps="100",
                    methods="mgda")
    at.run()
    no_exceptions(at)
    assert at.subheader[0].value == "Your problem" and len(at.dataframe[0].value) == 5
    assert "found on a grid" in _text(at)


def test_predict_first_hides_the_paths_until_the_student_commits_then_shows_the_answer_beside():
    at = playground(problem="three_bowls", methods="ew,mgda", steps="300", predict="1")
    at.run()
    no_exceptions(at)
    assert not at.dataframe and "Predict first" in _text(at)
    at.radio(key=next(r.key for r in at.radio if r.key.startswith("pg_predict_radio"))).set_value("mgda").run()
    at.button(key=next(b.key for b in at.button if b.key.startswith("pg_predict_lock"))).click()
    at.run()
    no_exceptions(at)
    assert at.dataframe  # revealed
    verdict = " ".join(w.value for w in at.warning)
    assert "You predicted **mgda**" in verdict and "The answer: **ew**" in verdict


def test_in_shared_mode_the_owner_sees_how_the_class_predicted(tmp_path, monkeypatch):
    from tests.ui.test_classroom import TOKEN, _reset_caches  # noqa: F401  (TOKEN: the server's secret)
    from ui.roles import class_predictions

    for k, v in {"MTL_RUNS_DIR": str(tmp_path), "MTL_STUDIO_SHARED": "1", "MTL_STUDIO_OWNER_TOKEN": TOKEN}.items():
        monkeypatch.setenv(k, v)
    _reset_caches()
    class_predictions.clear()
    link = {"problem": "three_bowls", "methods": "ew,mgda", "steps": "300", "predict": "1"}
    import ui.predict_box

    for i, guess in enumerate(("ew", "mgda", "mgda")):  # three students, three browsers
        monkeypatch.setattr(ui.predict_box, "browser_id", lambda i=i: f"browser-{i}")  # AppTest has no cookie
        student = playground(**link)
        student.run()
        student.radio(key=next(r.key for r in student.radio if r.key.startswith("pg_predict_radio"))).set_value(guess)
        student.run()
        student.button(key=next(b.key for b in student.button if b.key.startswith("pg_predict_lock"))).click().run()
        no_exceptions(student)
        assert "The class predicted" not in _text(student)  # a viewer does not see the others'
    monkeypatch.setattr(ui.predict_box, "browser_id", lambda: "the-owner")
    owner = playground(**link)
    owner.session_state["access_role"] = "owner"  # unlocked (app.py's sidebar reads the owner's link first)
    owner.run()
    no_exceptions(owner)
    assert "The class predicted (3 browsers): ew: 1 ✓ · mgda: 2" in _text(owner)
    class_predictions.clear()
