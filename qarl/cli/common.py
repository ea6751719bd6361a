"""What the command families share: the user-error types, the parser class and the argument types.

A bad argument value is rejected while the command line is parsed, by the argument's ``type``: the type raises
:class:`BadValue` (an :class:`argparse.ArgumentTypeError`) and :class:`ArgumentParser` turns it into
:class:`BadArgument`, which :func:`qarl.cli.main` reports as one line with exit status 2, like every other user error
(argparse's own errors, e.g. a missing required option, keep argparse's usage line).
"""

from __future__ import annotations

import argparse
import copy
import sys

import envs


class UserError(Exception):
    """A mistake in the command's input: reported as one line, no traceback."""


class BadValue(argparse.ArgumentTypeError):
    """Raised by an argument type for a value it rejects; the message says what is wrong (and what was meant).

    ``named``: the message is about the value alone and is reported after the option's name (``--rounds must ...``).
    """

    def __init__(self, message: str, named: bool = False) -> None:
        super().__init__(message)
        self.named = named


class BadArgument(UserError):
    """A :class:`BadValue` met while parsing; ``command`` is the prefix of its message, e.g. ``qarl bench``."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        # reported under the top-level command, as the handlers' errors are ("qarl bench", not "qarl bench loop")
        self.command = " ".join(prog.split()[:2])


class HelpFormatter(argparse.HelpFormatter):
    """Leaves out an option's alias spellings (``action.hidden_option_strings``) from the help."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        hidden = getattr(action, "hidden_option_strings", ())
        if hidden:
            action = copy.copy(action)
            action.option_strings = [s for s in action.option_strings if s not in hidden]
        return super()._format_action_invocation(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with :class:`HelpFormatter`, raising :class:`BadArgument` for a value a type rejected.

    Sub-parsers are made of the same class (argparse's default), so this holds for every command.
    """

    def __init__(self, *args, formatter_class: type[argparse.HelpFormatter] = HelpFormatter, **kwargs) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message: str):
        # argparse calls error() while it handles the ArgumentError that wraps the type's exception
        handled = sys.exc_info()[1]
        if isinstance(handled, argparse.ArgumentError) and isinstance(handled.__context__, BadValue):
            bad = handled.__context__
            raise BadArgument(self.prog, f"{handled.argument_name} {bad}" if bad.named else str(bad))
        super().error(message)


class AtLeast:
    """Argument type: an integer >= ``minimum`` (``--rounds 0`` is refused as ``--rounds must be at least 1``)."""

    def __init__(self, minimum: int) -> None:
        self.minimum = minimum
        self.__name__ = f"integer >= {minimum}"  # what argparse would name the type

    def __call__(self, value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise BadValue(f"must be an integer, got {value!r}", named=True) from None
        if n < self.minimum:
            raise BadValue(f"must be at least {self.minimum}, got {n}", named=True)
        return n


def task_id(value: str) -> str:
    """Argument type: a registered task id (an unknown one is refused with the close matches)."""
    try:
        envs.spec(value)
    except envs.UnknownTaskError as exc:
        raise BadValue(str(exc)) from None
    return value


def method_name(value: str) -> str:
    """Argument type: a registered method (see ``qarl methods``); nothing of the method is imported."""
    from qarl.experiment.registry import UnknownMethodError, get_method, list_methods

    if value not in list_methods():
        try:
            get_method(value)  # raises before importing anything, with the close matches
        except UnknownMethodError as exc:
            raise BadValue(str(exc)) from None
    return value


def add_method_argument(parser: argparse.ArgumentParser, **kwargs) -> argparse.Action:
    """``--method NAME``; ``--algo`` is accepted as its old spelling (same ``dest``, left out of the help)."""
    action = parser.add_argument("--method", "--algo", dest="method", metavar="METHOD", type=method_name, **kwargs)
    action.hidden_option_strings = ("--algo",)
    return action
