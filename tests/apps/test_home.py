"""AppTest: the home page renders on a demo workspace and on an empty one."""

from streamlit.testing.v1 import AppTest

from medvl.resources import app_dir

HOME = str(app_dir() / "Home.py")


def test_home_on_demo_workspace(demo_workspace, monkeypatch):
    monkeypatch.setenv("MEDVL_WORKSPACE", str(demo_workspace))
    at = AppTest.from_file(HOME, default_timeout=60).run()
    assert not at.exception
    assert any("not for clinical use" in w.value for w in at.warning)
    assert any("slides" in str(t.value) for t in at.table)


def test_home_without_workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDVL_WORKSPACE", str(tmp_path / "absent"))
    at = AppTest.from_file(HOME, default_timeout=60).run()
    assert not at.exception
    assert any("medvl demo" in i.value for i in at.info)
