"""The runner of every `hybrid-jax-*` command line: its help, and one rule for errors.

An app module (apps/<name>.py) has a raw docstring with one complete example (it is the
help text), its absl flags at module level, each with a description, and imports
nothing heavy at module level (jax, flax, orbax, torch, transformers, pandas,
matplotlib ... are imported inside `main`):

    from absl import flags

    from hybrid_jax.apps import cli

    _CONFIG = cli.define_config_file("config", None, "Config file ...")  # if it has one
    _WORKDIR = flags.DEFINE_string("workdir", None, "Where ...", required=True)

    def main(argv: list[str]) -> None:
        del argv
        from hybrid_jax.train.loop import train  # the heavy imports, here
        ...

    def run() -> None:  # the console script's entry point
        cli.run(main)

    if __name__ == "__main__":
        run()

and one line in setup.py's console_scripts, `"hybrid-jax-<name>=hybrid_jax.apps.<name>:run"`
(tests/apps/test_cli.py then checks its --help and example by itself).

`cli.run` then gives, the same through the console script and `python -m`:

- `--help` (also `-h`, `-?`, `--helpshort`): the module docstring and the module's own
  flags with their descriptions, on stdout, exit 0, before any flag is parsed or any
  heavy module imported. `--helpfull`: the same plus every other module's flags.
- The one rule for errors. An *expected* error prints one line on stderr,
  `<prog>: error: <message>` (the message names the file, field, flag or tensor), and
  exits with status 2: any `hybrid_jax.errors.UserError` (the libraries raise their
  subclasses; the apps convert the failures of opening the paths the user named, see
  `require_file`, `require_dir`, `refuse_existing`, `reading`), and absl's usage and
  flag errors (a missing or malformed flag, an unknown `--config.*` field, a config file
  that cannot be loaded). When the error wraps another one (`raise ... from e`, or
  raised while handling it), the line carries that cause too, e.g. the real reason an
  orbax checkpoint cannot be restored. Anything else is a bug and keeps its traceback
  (exit 1).
- `HYBRID_JAX_TRACEBACK=1` in the environment prints the full traceback of an expected
  error as well, above its line (the exit status stays 2).

This module imports only absl and `hybrid_jax.errors`, so `--help` stays fast.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import pathlib
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any, NoReturn

from absl import app, flags

from hybrid_jax.errors import UserError

# Flags defined through this module (define_config_file) belong to the app calling it.
flags.disclaim_key_flags()

USAGE_STATUS = 2  # exit status of an expected error (bad flags, input or output)
TRACEBACK_ENV = "HYBRID_JAX_TRACEBACK"  # "1": print expected errors' tracebacks too

_HELP = ("--help", "-help", "--helpshort", "-helpshort", "-h", "-?")
_HELPFULL = ("--helpfull", "-helpfull")
_CAUSE_CHARS = 600  # a cause's message beyond this is cut (the traceback env var shows all)
_PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)
_CONFIG_DEFAULTS: dict[str, str] = {}  # config flag name -> default "file:arg", loaded by run


class InputPathError(UserError, FileNotFoundError):
    """A path named on the command line does not exist or is not what the flag needs."""


class InputError(UserError, ValueError):
    """A file or spec named on the command line cannot be read as what the flag needs."""


class OutputExistsError(UserError, FileExistsError):
    """The output named on the command line exists and would be replaced."""


# ---------------------------------------------------------------------------- config flags
def define_config_file(name: str, default: str | None, help: str) -> flags.FlagHolder:
    """`ml_collections.config_flags.DEFINE_config_file`, its default loaded only by `run`.

    ml_collections loads a default config file when the flag is defined, i.e. when the
    app module is imported: that imports whatever the config file imports (jax, for the
    presets) before `--help` could answer, and raises a bad `--config.<field>` override
    at import, outside `run`'s error rule. Here the flag is defined without a default,
    and `run` puts `--<name>=<default>` first on the command line when it has no
    `--<name>`. Overrides (`--<name>.<section>.<field>=<value>`) work either way.
    """
    from ml_collections import config_flags

    holder = config_flags.DEFINE_config_file(name, None, help)
    flag = flags.FLAGS[name]
    if default is None:
        flag.default_as_str = None  # (ml_collections shows "'None'")
    else:
        _CONFIG_DEFAULTS[name] = default
        flag.default_as_str = repr(default)
    return holder


def _with_config_defaults(argv: list[str]) -> list[str]:
    for name, default in _CONFIG_DEFAULTS.items():
        if not any(re.match(rf"^--?{re.escape(name)}(=|$)", a) for a in argv[1:]):
            argv = [argv[0], f"--{name}={default}", *argv[1:]]
    return argv


# ---------------------------------------------------------------------------- app checks
def require_file(flag: str, path: str | os.PathLike) -> pathlib.Path:
    """`path` as a Path if it is a file, else `InputPathError` naming `--flag`."""
    p = pathlib.Path(path)
    if not p.is_file():
        what = "is a directory, not a file" if p.is_dir() else "no such file"
        raise InputPathError(f"--{flag}={path}: {what}")
    return p


def require_dir(flag: str, path: str | os.PathLike) -> pathlib.Path:
    """`path` as a Path if it is a directory, else `InputPathError` naming `--flag`."""
    p = pathlib.Path(path)
    if not p.is_dir():
        what = "is a file, not a directory" if p.exists() else "no such directory"
        raise InputPathError(f"--{flag}={path}: {what}")
    return p


def refuse_existing(flag: str, path: str | os.PathLike, overwrite_flag: str = "overwrite"
                    ) -> pathlib.Path:
    """`path` as a Path if nothing is there, else `OutputExistsError` naming `--flag`."""
    p = pathlib.Path(path)
    if p.exists() or p.is_symlink():
        raise OutputExistsError(f"--{flag}={path} exists; pass --{overwrite_flag} to "
                                "replace it")
    return p


@contextlib.contextmanager
def reading(flag: str, value: object, *errors: type[Exception]) -> Iterator[None]:
    """Failures of opening the input that `--flag=value` names become `UserError`s.

    Wrap only the call that opens the user's file(s), so that the same exception from
    anywhere else stays a bug with a traceback. A missing or unreadable path
    (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) becomes
    `InputPathError`; each type of `errors` (e.g. ValueError, for a loader whose
    ValueErrors all describe its input) becomes `InputError`. A `UserError` passes as it
    is. The original stays the cause (`raise ... from`); its message is the line's unless
    it is long, then the line carries it (cut) as the cause.
    """
    try:
        yield
    except UserError:
        raise
    except _PATH_ERRORS as e:
        raise InputPathError(f"--{flag}={value}: {_short(e)}") from e
    except errors as e:
        raise InputError(f"--{flag}={value}: {_short(e)}") from e


def _short(exc: BaseException) -> str:
    # A long message (tensorstore's name the whole spec) goes on as the cut cause.
    msg = one_line(_message(exc))
    return msg if len(msg) <= 300 else "cannot be read"


# ---------------------------------------------------------------------------- one line
def _message(exc: BaseException) -> str:
    # KeyError's str() is the repr of its argument (quotes, escaped newlines).
    if (isinstance(exc, KeyError) and type(exc).__str__ is KeyError.__str__
            and len(exc.args) == 1):
        return str(exc.args[0])
    return str(exc)


def one_line(text: str) -> str:
    """`text` on one line: lines joined by '; ' (by ' ' after a colon), stripped."""
    out = ""
    for line in (s.strip() for s in text.splitlines()):
        if line:
            out += ("" if not out else " " if out.endswith(":") else "; ") + line
    return out


def _strip_traceback(text: str) -> str:
    # ml_collections puts a formatted traceback into the message of a config file's
    # error; the exception it formats is in the chain, so keep only the text before it.
    head, sep, _ = text.partition("Traceback (most recent call last):")
    return head.rstrip().rstrip(":").rstrip() if sep else text


def error_line(prog: str, exc: BaseException) -> str:
    """`<prog>: error: <message>`, one line, with each distinct cause of `exc` appended.

    The chain is followed through `__cause__` and through `__context__` (an error raised
    while handling another); a cause whose text the line already holds is skipped.
    """
    text = one_line(_strip_traceback(_message(exc))) or type(exc).__name__
    seen = {id(exc)}
    cause = _cause(exc)
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        msg = one_line(_strip_traceback(_message(cause)))
        if len(msg) > _CAUSE_CHARS:
            msg = msg[:_CAUSE_CHARS] + f" ... ({TRACEBACK_ENV}=1 shows all)"
        if msg and msg not in text:
            text += f" [cause: {type(cause).__name__}: {msg}]"
        cause = _cause(cause)
    return f"{prog}: error: {text}"


def _cause(exc: BaseException) -> BaseException | None:
    if exc.__cause__ is not None:
        return exc.__cause__
    return None if exc.__suppress_context__ else exc.__context__


def _fail(prog: str, exc: BaseException) -> NoReturn:
    if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
        traceback.print_exception(exc)
    sys.stderr.write(error_line(prog, exc) + "\n")
    sys.stderr.flush()
    sys.exit(USAGE_STATUS)


# ---------------------------------------------------------------------------- help
def program_name(module: ModuleType, argv0: str) -> str:
    """How the user started the tool: the console script's name, or `python -m <module>`."""
    base = os.path.basename(argv0)
    spec = getattr(module, "__spec__", None)
    if base.endswith(".py") and module.__name__ == "__main__" and spec is not None:
        return f"python -m {spec.name}"
    return module.__name__ if base in ("", "-c") else base


def help_text(module: ModuleType, *, full: bool = False) -> str:
    """The module docstring, then its flags (`full`: then every other module's)."""
    doc = inspect.cleandoc(module.__doc__ or "")
    own = flags.FLAGS.module_help(module).splitlines()[2:]  # drop "\n<module name>:"
    parts = [doc, "flags:\n" + "\n".join(own)]
    if full:
        mine = {f.name for f in flags.FLAGS.get_key_flags_for_module(module)}
        for name in sorted(flags.FLAGS.flags_by_module_dict()):
            others = [f for f in flags.FLAGS.get_key_flags_for_module(name)
                      if f.name not in mine]
            if others:
                parts.append(flags.FLAGS.module_help(name).strip("\n"))
    else:
        parts.append("absl's and the libraries' flags: --helpfull.")
    return "\n\n".join(p for p in parts if p) + "\n"


def _help_request(args: Sequence[str]) -> str | None:
    for arg in args:
        if arg == "--":
            break
        if arg in _HELP:
            return "short"
        if arg in _HELPFULL:
            return "full"
    return None


# ---------------------------------------------------------------------------- config flags
def _check_config_flags(module: ModuleType) -> None:
    """A config file that cannot be loaded is a usage error now, not an OSError later.

    ml_collections defers the failure to load `--config=<file>` until the config's
    first attribute access, as an OSError from inside `main`.
    """
    config_flags = sys.modules.get("ml_collections.config_flags")
    if config_flags is None:
        return
    for flag in flags.FLAGS.get_key_flags_for_module(module):
        try:
            file = config_flags.get_config_filename(flag)
        except TypeError:  # not a config flag
            continue
        if flag.value is None:
            continue
        try:
            _ = flag.value.keys  # an unloadable file raises here
        except OSError as e:
            if not os.path.isfile(file):
                raise app.UsageError(f"--{flag.name}={file}: no such config file") from None
            raise app.UsageError(f"--{flag.name}={file}: cannot be loaded") from e.__cause__


def _unknown_config_field(exc: BaseException, argv: Sequence[str]) -> str | None:
    """The message for an override of a field the config lacks, else None.

    ml_collections reports `--config.train.nope=1` as a bare AttributeError / KeyError
    from its override-path lookup (config_path.py), which is all this matches.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    if not any(f.filename.endswith(os.path.join("config_flags", "config_path.py"))
               for f in frames):
        return None
    field = _message(exc).strip("\"'")
    overrides = [a for a in argv if re.match(r"^--?\w+\.", a)]
    named = [a for a in overrides if field in re.split(r"[.=]", a.lstrip("-"))]
    where = ", ".join(named or overrides)
    return f"{where}: the config has no field {field!r}"


# ---------------------------------------------------------------------------- run
def run(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None) -> NoReturn:
    """`absl.app.run(main)` under this module's help and error rule (see the docstring)."""
    module = sys.modules[main.__module__]
    from_sys = argv is None
    argv = list(sys.argv if from_sys else argv)
    prog = program_name(module, argv[0])
    if _help_request(argv[1:]) is None:
        argv = _with_config_defaults(argv)
        if from_sys:
            sys.argv[:] = argv  # config_flags reads its overrides from sys.argv

    def parse(args: list[str]) -> list[str]:
        wanted = _help_request(args[1:])
        if wanted:
            sys.stdout.write(help_text(module, full=wanted == "full"))
            sys.stdout.flush()
            sys.exit(0)
        try:
            rest = flags.FLAGS(args)
            _check_config_flags(module)
        except (flags.Error, app.UsageError) as e:
            _fail(prog, e)
        except (AttributeError, KeyError) as e:
            msg = _unknown_config_field(e, args)
            if msg is None:
                raise
            _fail(prog, app.UsageError(msg))
        return rest

    def guarded(args: list[str]) -> Any:
        try:
            return main(args)
        except (UserError, app.UsageError, flags.Error) as e:
            _fail(prog, e)

    app.run(guarded, argv=argv, flags_parser=parse)
    sys.exit(0)  # (app.run exits itself; this tells type checkers)


# ---------------------------------------------------------------------------- shared flags
def define_compilation_cache() -> flags.FlagHolder[str]:
    """The --compilation_cache flag of the apps that compile (train, study)."""
    return flags.DEFINE_string(
        "compilation_cache", "auto",
        "Persistent XLA compilation cache, so that a resumed run does not compile again: "
        "'auto' = $JAX_COMPILATION_CACHE_DIR if set (jax reads it), else "
        "<workdir>/xla_cache on GPU and TPU (off on CPU); 'none' = off; anything else = "
        "that directory.")


def compilation_cache_dir(flag: str, workdir: str, platform: str,
                          env: Mapping[str, str]) -> str | None:
    """The directory to set as jax's compilation cache, or None to leave jax's setting."""
    if flag == "none" or (flag == "auto" and env.get("JAX_COMPILATION_CACHE_DIR")):
        return None
    if flag != "auto":
        return flag
    return None if platform == "cpu" else os.path.join(workdir, "xla_cache")


def use_compilation_cache(flag: str, workdir: str) -> str | None:
    """Sets jax's compilation cache as `compilation_cache_dir` says (imports jax)."""
    import jax

    cache = compilation_cache_dir(flag, workdir, jax.default_backend(), os.environ)
    if cache is not None:
        jax.config.update("jax_compilation_cache_dir", cache)
    return cache
