"""Hook specifications: the whole surface a plugin can implement.

Registration hooks receive a ``register`` callable; call it once per thing you provide:
``register(name, factory, description="...")``. Names are global per kind: registering a
name that another plugin already registered is an error that names both plugins.
Built-in plugins are registered before entry-point plugins; never depend on the order
between entry-point plugins. Lifecycle hooks receive the run's state; their return values
are ignored.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("promptopt")

Register = Callable[..., None]


@hookspec
def promptopt_register_models(register: Register) -> None:
    """Register model backends: ``register(name, factory)``.

    :param register: ``factory(device: str, dtype: str | None) -> CausalLMBackend``.

    Called once when the plugin host starts, before any command runs.
    """


@hookspec
def promptopt_register_instruments(register: Register) -> None:
    """Register survey instruments: ``register(name, factory)``.

    :param register: ``factory() -> promptopt.objectives.Instrument``.

    Called once when the plugin host starts.
    """


@hookspec
def promptopt_register_scorers(register: Register) -> None:
    """Register dimension scorers: ``register(name, factory)``.

    :param register: ``factory(constants: dict[str, float] | None) -> LinearScorer`` (any
        object with ``dimensions``, ``score(means [..., Q]) -> [..., D]`` and ``describe()``).

    Called once when the plugin host starts. A scorer named like an instrument is that
    instrument's default scorer.
    """


@hookspec
def promptopt_register_optimizers(register: Register) -> None:
    """Register optimizers: ``register(name, cls)``.

    :param register: ``cls`` is a subclass of ``promptopt.optimizers.Optimizer``. A name ending
        in ``:*`` registers a family: ``register("ng:*", make)`` where ``make(suffix) -> cls``
        resolves names such as ``ng:TwoPointsDE``.

    Called once when the plugin host starts; classes are validated against the contract.
    """


@hookspec
def promptopt_register_targets(register: Register) -> None:
    """Register named tables of target scores: ``register(name, factory)``.

    :param register: ``factory() -> TargetTable`` with ``resolve(query) -> Target`` and
        ``list() -> list[Target]``.

    Called once when the plugin host starts.
    """


@hookspec
def promptopt_register_commands(cli: Any) -> None:
    """Add click commands to the ``promptopt`` command group.

    :param cli: the root ``click.Group``; call ``cli.add_command(...)``.

    Called once when the CLI is built, after the built-in commands exist.
    """


@hookspec
def promptopt_run_start(state: Any) -> None:
    """A run is about to evaluate its first generation (or resumed from a checkpoint).

    :param state: the runner's ``RunState`` (config, run directory, target, naive scores).
    """


@hookspec
def promptopt_generation_end(state: Any, record: dict) -> None:
    """A generation was evaluated and told to the optimizer; its history row was written.

    :param state: the runner's ``RunState``.
    :param record: the history row just written (generation, evaluations, losses, scores).
    """


@hookspec
def promptopt_run_end(state: Any, summary: dict) -> None:
    """A run finished (budget spent or stopped early) and summary.json was written.

    :param state: the runner's ``RunState``.
    :param summary: the contents of summary.json.
    """
