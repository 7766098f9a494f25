"""Installing normcourse must not replace a runtime's own torch or triton (Colab)."""

import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirement(name):
    return [r for r in PROJECT["dependencies"] if re.split(r"[<>=!~ \[;]", r, maxsplit=1)[0] == name]


def test_torch_is_only_a_lower_bound():
    (torch_req,) = _requirement("torch")
    assert "==" not in torch_req and "<" not in torch_req and "~=" not in torch_req, torch_req


def test_triton_is_not_a_hard_requirement():
    # CUDA builds of torch bring their matching triton; a pin here would fight it.
    assert _requirement("triton") == []


def test_requirements_txt_pins_the_local_cpu_environment():
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.lower()] = version
    assert pins["torch"] == "2.13.0"
    for name in ("triton", "jupyter-book", "nbval", "nbconvert", "ipywidgets", "matplotlib", "pytest"):
        assert pins.get(name), f"{name} is not pinned in requirements.txt"
    assert pins["jupyter-book"].startswith("1."), "the book is built with Jupyter Book 1.x"
