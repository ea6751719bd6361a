"""Every game class documents itself (docs/games.md): ``help(type(game))`` shows the game's own docstring.

The classes are imported from the registry's entry points; no MuJoCo model is built. A class without a docstring of
its own (``__doc__`` None, e.g. when the docstring is an expression rather than a string literal) would show its base
class's text instead, so the test reads the class's own ``__doc__``.
"""

from __future__ import annotations

import importlib
import pydoc

import pytest

import envs
from envs.core import ParamSpec, ZeroSumGame
from envs.dmc_family import DMCGame

SECTIONS = ("## Action spaces", "## Observation", "## Rewards", "## Episode end", "## Perturbations",
            "## Version history")  # fmt: skip


def _game_class(task_id: str) -> type[ZeroSumGame]:
    module, _, name = envs.spec(task_id).entry_point.partition(":")
    return getattr(importlib.import_module(module), name)


def _param_specs(cls: type[ZeroSumGame], task_id: str) -> tuple[ParamSpec, ...]:
    if issubclass(cls, DMCGame):
        # dmc ranges may depend on the suite task (cartpole's pole mass), hence a class method of the task name;
        # quadruped-navigate registers no task name and its parameters do not depend on one
        return cls.param_specs_for(envs.spec(task_id).kwargs.get("task_name", ""))
    return cls.param_specs


@pytest.mark.parametrize("task_id", envs.list_tasks())
def test_game_class_has_its_own_docstring(task_id: str) -> None:
    cls = _game_class(task_id)
    doc = cls.__dict__.get("__doc__")
    assert isinstance(doc, str) and doc.strip(), f"{cls.__name__} has no docstring of its own"
    assert doc.lstrip().startswith(task_id.rsplit("-", 1)[0]), f"{cls.__name__}'s docstring does not open with its task"
    missing = [s for s in SECTIONS if s not in doc]
    assert not missing, f"{cls.__name__}'s docstring lacks {missing}"
    specs = _param_specs(cls, task_id)
    assert len(specs) == 2
    perturbations = doc.split("## Perturbations", 1)[1]
    for p in specs:
        assert f"``{p.name}``" in perturbations, f"{cls.__name__}'s docstring does not document parameter {p.name}"
    for body in {d.body for d in cls.force_dims}:
        assert body in doc, f"{cls.__name__}'s docstring does not name the adversary's body {body!r}"


@pytest.mark.parametrize("task_id", envs.list_tasks())
def test_help_shows_the_game_docstring(task_id: str) -> None:
    cls = _game_class(task_id)
    page = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    first_line = cls.__dict__["__doc__"].strip().splitlines()[0]
    assert first_line in page
