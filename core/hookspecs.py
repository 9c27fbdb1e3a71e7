"""Hook specifications: the whole surface a plugin can implement.

Registration hooks receive a ``register`` callable; call it once per thing you provide:
``register(name, factory, description="...")``. Names are global per kind: registering a
name that another plugin already registered is an error that names both plugins.
Built-in plugins are registered before entry-point plugins; never depend on the order
between entry-point plugins. Lifecycle hooks receive the run's state; their return values
are ignored. The full guide for plugin authors is docs/plugins.md.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("promptopt")

Register = Callable[..., None]


@hookspec
def promptopt_register_models(register: Register) -> None:
    """Register model backends: ``register(name, factory)``.

    :param register: ``register(name, factory, description="")`` where
        ``factory(device: str, dtype: str | None) -> CausalLMBackend`` (called with keywords).

    Called once when the plugin host starts, before any command runs. The factory's signature
    is checked on registration; the backend it returns is checked when first created.
    """


@hookspec
def promptopt_register_instruments(register: Register) -> None:
    """Register survey instruments: ``register(name, factory)``.

    :param register: ``register(name, factory, description="")`` where
        ``factory() -> promptopt.objectives.Instrument`` (``load_instrument(path)`` builds one
        from a TOML file; an instrument with a ``[scorer]`` section brings its own scorer).

    Called once when the plugin host starts. The factory is not called then: what it returns
    (an Instrument whose every item has an answer scale) is checked when first created.
    """


@hookspec
def promptopt_register_scorers(register: Register) -> None:
    """Register dimension scorers: ``register(name, factory)``.

    :param register: ``register(name, factory, description="")`` where
        ``factory(constants: dict[str, float] | None) -> LinearScorer`` (called with the keyword
        ``constants``; any object with ``dimensions``, ``score(means [..., Q]) -> [..., D]`` and
        ``describe()`` will do).

    Called once when the plugin host starts. A scorer named like an instrument is the default
    scorer of an instrument without a ``[scorer]`` section.
    """


@hookspec
def promptopt_register_optimizers(register: Register) -> None:
    """Register optimizers: ``register(name, cls)``.

    :param register: ``register(name, cls, description="")`` where ``cls`` is a subclass of
        ``promptopt.optimizers.Optimizer`` implementing ``_ask`` and ``_tell``. A name ending in
        ``:*`` registers a family: ``register("ng:*", make)`` where ``make(member) -> cls``
        resolves names such as ``ng:TwoPointsDE``.

    Called once when the plugin host starts; classes are validated on registration (family
    members when first resolved).
    """


@hookspec
def promptopt_register_targets(register: Register) -> None:
    """Register named tables of target scores: ``register(name, factory)``.

    :param register: ``register(name, factory, description="")`` where ``factory() -> TargetTable``
        with ``resolve(query) -> Target`` and ``list() -> list[Target]``. A run picks its table
        with the ``targets`` option (default ``hofstede``); the scorer's dimensions must all
        have scores in the resolved target.

    Called once when the plugin host starts; the table is checked when first used.
    """


@hookspec
def promptopt_register_commands(cli: Any) -> None:
    """Add click commands to the ``promptopt`` command group.

    :param cli: the root ``click.Group``; call ``cli.add_command(...)``.

    Called once per CLI invocation, after the built-in commands exist, one plugin at a time. A
    name already taken (a built-in command, another plugin's) is refused with an error naming
    its owner; a third-party implementation that raises (or is refused) is reported and skipped.
    """


@hookspec
def promptopt_run_start(state: Any) -> None:
    """A run is about to evaluate its first generation (or resumed from a checkpoint).

    :param state: the runner's ``RunState`` (config, run directory, target, naive scores).

    Called once per run session, after the baselines are scored. Third-party lifecycle hooks
    that raise are reported once and ignored (fatal with ``PROMPTOPT_STRICT_PLUGINS=1``).
    """


@hookspec
def promptopt_generation_end(state: Any, record: dict) -> None:
    """A generation was evaluated and told to the optimizer; its history row was written.

    :param state: the runner's ``RunState``.
    :param record: the history row just written (generation, evaluations, losses, scores).

    Called once per generation, after history.csv (and the checkpoint) was written.
    """


@hookspec
def promptopt_run_end(state: Any, summary: dict) -> None:
    """A run finished (budget spent or a stopping rule met) and summary.json was written.

    :param state: the runner's ``RunState``; ``state.stop_reason`` is the rule that ended it
        (``budget``, ``generations``, ``target_loss``, ``patience``, ``time_limit``).
    :param summary: the contents of summary.json.

    Called once at the end of a run, after summary.json and best/ were written. A session that
    stops before that calls :func:`promptopt_run_stopped` instead.
    """


@hookspec
def promptopt_run_stopped(state: Any, reason: str) -> None:
    """A run session ended without finishing: Ctrl-C, a signal, or an error.

    :param state: the runner's ``RunState``; its history holds every finished generation, and
        the run directory's checkpoint resumes from the last one (``promptopt run --resume``).
    :param reason: ``"Ctrl-C"``, the signal's name (``"SIGTERM"``, ``"SIGHUP"``), or
        ``"error: <exception type>: <message>"``; also set as ``state.stop_reason``.

    Called once, after :func:`promptopt_run_start`, in place of :func:`promptopt_run_end`, so a
    tracker can close its run (a resumed session calls ``promptopt_run_start`` again).
    """
