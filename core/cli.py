"""The `promptopt` command line. Exit 0 success, 2 bad usage or input (one line), 1 runtime failure."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

import click

from .config import BASES, DTYPES, EXECUTORS, INITS, POSITIONS
from .errors import PromptoptError, Stopped, UsageError, one_line
from .host import KINDS, PluginHost
from .launcher import exit_on_ctrl_c

_host: PluginHost | None = None


def host() -> PluginHost:
    global _host
    if _host is None:
        _host = PluginHost()
        for failure in _host.failures:
            click.echo(failure.message(), err=True)
    return _host


@click.group()
@click.version_option(package_name="promptopt")
def cli() -> None:
    """Black-box optimisation of soft prompts of a frozen language model."""


# how the model is asked and scored: `run` and `evaluate` take these
SCORING_OPTIONS = [
    click.option("--instrument", help="vsm13 (default), a plugin's, or a survey TOML file"),
    click.option("--scorer", help="scorer name (default: the instrument's own)"),
    click.option("--country", help="target by ISO code or name, e.g. US, USA, 'United States' (default US)"),
    click.option("--model", help="smollm2 (default), tiny, a saved model directory, a .gguf file or a cached Hugging Face id"),
    click.option("--seed", type=int, help="random seed, 0 to 2**63-1 (default 0)"),
    click.option("--position", type=click.Choice(POSITIONS),
                 help="soft tokens as the first tokens of the reply (reply, default), at the answer cue before "
                      "the assistant turn's newline (answer), at the end of the user message (suffix) or its start (prefix)"),
    click.option("--device", help="cpu (default), cuda (its first GPU), cuda:N or mps"),
    click.option("--dtype", type=click.Choice(DTYPES), help="model dtype (default auto: fp32 on CPU, and on CUDA for models "
                                                           "under 1B parameters; bf16 on CUDA from 1B)"),
    click.option("--respondents", type=int, help="simulated respondents from the demographic items (default 0: none)"),
    click.option("--counterbalance/--no-counterbalance", default=None,
                 help="also ask every item with its scale numbered the other way round and average the two "
                      "answers, so answer-order bias cancels (2x the forward passes; default off)"),
    click.option("--targets", help="target table to resolve --country in (default hofstede)"),
    click.option("--batch-rows", type=int, help="(candidate x item) rows per forward (default: from a memory budget)"),
    click.option("--config", "config_file", type=click.Path(dir_okay=False),
                 help="TOML file of these options (and [hyper], [constants], system_prompt); flags override it, "
                      "and a relative instrument or model path in it is read from the file's folder "
                      "(a relative out from the working directory)"),
]
# how the soft prompt is searched for: `run` only (evaluate scores a given prompt)
SEARCH_OPTIONS = [
    click.option("--optimizer", help="de (default), cma, ng:<Name>, random, or a plugin's"),
    click.option("--popsize", type=int, help="candidates per generation, at least 4 (default 8)"),
    click.option("--generations", type=int, help="generations to run (default: --budget / --popsize)"),
    click.option("--budget", type=int, help="evaluations to spend, in whole generations (rounded down to a multiple "
                                               "of --popsize), instead of --generations (default 480)"),
    click.option("--tokens", type=int, help="soft-prompt length K in virtual tokens (default 1)"),
    click.option("--subspace", type=int, help="search dimension d of x0 + A z; 0 searches all K x H values (default 64)"),
    click.option("--radius", type=float, help="how far soft prompts may move from x0, in units of the "
                                               "spread of real token embeddings (default 1)"),
    click.option("--basis", type=click.Choice(BASES),
                 help="directions of the subspace: Gaussian (default) or real tokens' embeddings minus their mean"),
    click.option("--init", type=click.Choice(INITS),
                 help="where the soft prompt starts: K random vocabulary tokens (random, default, seeded) or the "
                      "punctuation token after which the model's answers fit the target best (screen)"),
    click.option("--init-text", help="text whose tokens start the soft prompt, '{country}' = the target's name "
                                      "(instead of --init)"),
    click.option("--min-mass", type=float, help="floor on the option mass, the share of the model's next-token "
                                                 "probability on the answer digits, in [0, 1) (default 0.1; 0: no floor)"),
    click.option("--max-entropy", type=float, help="cap on how undecided the answers are: their mean entropy over "
                                                    "the options, 0 (one option) to 1 (all equally likely); "
                                                    "the bare embedded model is at 0.53 (default: no cap)"),
    click.option("--augment", type=int, help="copies of the survey with a fifth of each question's words dropped, "
                                               "fitted alongside the plain one so the prompt must carry across "
                                               "wordings (training only; default 0)"),
    click.option("--shift-weight", type=float, help="L1 points of penalty per answer point the item means move, on "
                                                     "average, from the bare model's (default: none)"),
]


def _options(options: list):
    def apply(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn
    return apply


run_options = _options(SEARCH_OPTIONS + SCORING_OPTIONS)
scoring_options = _options(SCORING_OPTIONS)


@cli.command()
@run_options
@click.option("--target-loss", type=float, help="stop once the best loss is at or below this")
@click.option("--patience", type=int, help="stop after this many generations without improvement")
@click.option("--time-limit", type=float, help="stop after this many seconds of optimisation")
@click.option("--icl/--no-icl", "icl_baseline", default=None, help="also score the ICL persona baseline (default on)")
@click.option("--executor", type=click.Choice(EXECUTORS),
              help="where generations are evaluated: local (default) or ray (pip install 'promptopt[ray]')")
@click.option("--ray-address", help="Ray cluster to join, e.g. auto or ray://HEAD:10001 "
              "(default: $RAY_ADDRESS, else a new local Ray)")
@click.option("--actors", type=int, help="Ray actors (default: one per GPU with --device cuda, else one per CPU)")
@click.option("--out", type=click.Path(file_okay=False), help="run directory (default runs/<time>-<optimizer>-<country>)")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), help="continue the run in this directory")
@click.option("--quiet", is_flag=True, help="no progress bar or status lines (the closing table is still printed)")
def run(config_file, quiet, resume_dir, **flags) -> None:
    """Align the model to a target by searching a soft prompt.

    Optimises a soft prompt until the model's survey answers score as the target country does;
    writes the run directory (config.json, history.csv, best/, summary.json, report)."""
    from .config import build_config
    from .runner import resume, run as run_alignment

    try:
        if resume_dir:
            if config_file:
                raise UsageError("--resume continues the run's own config; drop --config")
            resume(resume_dir, host(), overrides=flags, progress=not quiet, echo=click.echo)
            return
        config = build_config(config_file, **flags)
        run_alignment(config, host(), progress=not quiet, echo=click.echo)
    except KeyboardInterrupt as exc:
        if not getattr(exc, "resume_noted", False):
            raise  # stopped before there was a run to keep: click's Abort, main's one line
        sys.exit(128 + _signum(exc))  # the runner said it all


@cli.command()
@click.argument("config_file", type=click.Path(dir_okay=False))
def validate(config_file) -> None:
    """Check a run config file without running it.

    Keys, types and values, and that every name it uses resolves (optimizer, instrument, scorer,
    target, model), without loading the model."""
    from .config import build_config
    from .session import check_optimizer, check_survey

    config = build_config(config_file)
    h = host()
    optimizer = type(check_optimizer(h, config))
    instrument, scorer, target = check_survey(h, config)
    h.check_model_name(config.model)   # resolves, not loaded: the weights may be gigabytes
    click.echo(f"{config_file}: ok ({config.optimizer} [{optimizer.__name__}], {instrument.name} with "
               f"{len(instrument.items)} items, scorer {_scorer_name(scorer)}, target {target.name} ({target.code}), "
               f"model {config.model}, {config.total_generations} generation{'s' if config.total_generations != 1 else ''} "
               f"x {config.popsize})")


def _scorer_name(scorer) -> str:
    """A plugin's scorer need only have dimensions, score and describe (docs/plugins.md)."""
    described = scorer.describe() if callable(getattr(scorer, "describe", None)) else {}
    return getattr(scorer, "name", None) or (described or {}).get("name") or type(scorer).__name__


@cli.command()
@scoring_options
@click.option("--baseline", type=click.Choice(["naive", "icl"]),
              help="score the bare model or an ICL persona prompt (default naive, unless --soft-prompt)")
@click.option("--soft-prompt", "soft_prompt", type=click.Path(),
              help="a finished run directory, its best/ folder or a .safetensors file to score")
# promptopt.objectives.WORDINGS, spelt out so defining the command imports nothing heavy (tested equal)
@click.option("--wording", type=click.Choice(["main", "alternate"]), default="main", show_default=True,
              help="the items' wording: alternate is the held-out paraphrase a soft prompt never saw")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def evaluate(config_file, baseline, soft_prompt, wording, as_json, **flags) -> None:
    """Score the model once: naive, ICL or a saved soft prompt.

    The instrument's answers as dimension scores against the target, with the L1 loss, option
    mass and answer entropy."""
    from .evaluate import evaluate_baseline
    from .rundir import json_text

    result = evaluate_baseline(host(), config_file, flags, baseline, soft_prompt, wording)
    if as_json:
        click.echo(json_text(result))
        return
    click.echo(f"{result['label']} ({wording} wording): L1 loss {result['loss']:.2f} vs "
               f"{result['target']['name']} ({result['loss_definition']})")
    for dim, value in result["dimensions"].items():
        click.echo(f"  {dim}  target {result['target']['scores'][dim]:>5.0f}  model {value:>6.1f}")
    click.echo(f"  option mass {result['option_mass']:.1%} (the next token's share on the answer digits)")
    click.echo(f"  answer entropy {result['answer_entropy']:.2f} (0: one option picked, 1: all equally likely)")
    scoring, constants = result["scoring"], set(result["constants"].values())
    click.echo(f"  target source: {result['target']['source']}")
    click.echo(f"  model {scoring['model']}, position {scoring['position']}, seed {scoring['seed']}, counterbalance "
               f"{'on' if scoring['counterbalance'] else 'off'}, constants C = "
               + (f"{constants.pop():g}" if len(constants) == 1 else str(result["constants"])))
    if result["settings_from"]:
        click.echo(f"  scored as its run was (target, model, position, ...: {result['settings_from']}); flags override")


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="where to write report.png and report.md "
              "(default: the run directory)")
def report(run_dir, out) -> None:
    """Plot a finished run and write report.md.

    report.png: the loss curve and the dimensions (naive, ICL, aligned, target); report.md: the same
    as a table, with the run's settings and provenance."""
    from .report import make_report

    png, md = make_report(run_dir, out)
    click.echo(f"wrote {png} and {md}")


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--base-model", help="base_model_name_or_path for the PEFT adapter (default: the run's model)")
def export(run_dir, base_model) -> None:
    """Export a finished run for analysis and for PEFT.

    Writes history.parquet, scores.csv (tidy: one row per method and dimension) and the best soft
    prompt as a PEFT prompt-tuning adapter (best/peft/)."""
    from .export import check_base_model, check_finished, export_history, export_peft, export_scores

    check_base_model(base_model)
    check_finished(run_dir)   # a damaged or unfinished run: one line, and nothing written
    click.echo(f"wrote {export_history(run_dir)}")
    click.echo(f"wrote {export_scores(run_dir)}")
    click.echo(f"wrote {export_peft(run_dir, base_model)}/ (PEFT prepends its virtual tokens; see its README.md)")


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def runs(paths, as_json) -> None:
    """List runs: finished, stopped (to --resume) or running.

    Every run directory in PATHS (default runs/), with its progress and loss."""
    from .runs import describe_run, find_runs, format_runs, runs_json

    found = find_runs([Path(p) for p in paths or ["runs"]])
    if not found and not as_json:
        raise UsageError(f"no run directory (one holding config.json) in {', '.join(paths or ['runs'])}; "
                         "give the folder `promptopt run --out` wrote to")
    rows = [describe_run(d) for d in found]
    click.echo(runs_json(rows) if as_json else format_runs(rows))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a list")
def plugins(as_json) -> None:
    """Show loaded plugins, their hooks, and what each registered."""
    described = host().describe()
    if as_json:
        click.echo(json.dumps(described, indent=2))
        return
    for info in described["plugins"]:
        click.echo(f"{info['name']} ({' '.join(filter(None, (info['distribution'], info['version'])))})")
        for kind, names in info["registered"].items():
            click.echo(f"  {kind}: {', '.join(names)}")
        others = [hk for hk in info["hooks"] if not hk.startswith("promptopt_register_")]
        if others:
            click.echo(f"  hooks: {', '.join(others)}")
    for failed in described["failed"]:
        click.echo(f"{failed['name']} ({failed['distribution']}): FAILED, {failed['error']}")


@cli.command("list")
@click.argument("kind", type=click.Choice(list(KINDS)))
def list_cmd(kind) -> None:
    """List what plugins registered of one kind.

    Optimizers, instruments, scorers, models or targets, each with its description and plugin."""
    h = host()
    width = max([12, *(len(entry.name) for entry in h.registries[kind])])
    for entry in h.registries[kind]:
        click.echo(f"{entry.name:<{width}} {entry.description}  [{entry.plugin}]")
        if kind == "targets":
            try:
                table = h.target_table(entry.name).list()
            except PromptoptError as exc:  # one broken table: said on its row, the others still listed
                click.echo(f"    (cannot list it: {exc})")
                continue
            for t in table:
                scores = " ".join(f"{d} {v:.0f}" for d, v in t.scores.items())
                click.echo(f"    {t.code:<16} {t.name:<28} {scores}")


class _PluginCommands:
    """The root group as one plugin's promptopt_register_commands sees it: a command name already
    taken (built in, or by another plugin) is an error naming both, not a silent replacement."""

    def __init__(self, group: click.Group, plugin: str, owners: dict[str, str], host: PluginHost) -> None:
        self._group, self._plugin, self._owners, self._host = group, plugin, owners, host

    def add_command(self, command: click.Command, name: str | None = None) -> None:
        name = name or command.name
        if name in self._group.commands:
            owner = self._owners.get(name, "promptopt (built in)")
            raise UsageError(f'command "{name}" is already registered by {owner}; choose another name')
        self._group.add_command(command, name)
        self._owners[name] = f'plugin "{self._plugin}"'
        self._host.info[self._plugin].registered.setdefault("commands", []).append(name)

    def command(self, *args, **kwargs):
        return lambda f: self._added(click.command(*args, **kwargs)(f))

    def group(self, *args, **kwargs):
        return lambda f: self._added(click.group(*args, **kwargs)(f))

    def _added(self, command: click.Command) -> click.Command:
        self.add_command(command)
        return command

    def __getattr__(self, name: str):
        return getattr(self._group, name)


def add_plugin_commands(h: PluginHost, group: click.Group) -> None:
    """Each plugin's commands, one plugin at a time, so a clash names its plugin; a third-party hook that
    raises (a clash included) is reported and skipped, as every lifecycle hook is (fatal when strict)."""
    owners: dict[str, str] = {}
    for impl in h.pm.hook.promptopt_register_commands.get_hookimpls():
        impl.function(cli=_PluginCommands(group, impl.plugin_name, owners, h))


def _stop_on_signal(signum: int, frame) -> None:
    """The first SIGTERM or SIGHUP stops the run; repeats (a scheduler that signals twice, a process
    group's every member) are ignored until main() restores the handlers, so they cannot cut the
    clean-up (checkpoint, temp files, the stop message) short."""
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    raise Stopped(signum)


def _signum(exc: BaseException | None) -> int:
    """The signal that stopped the command: a Stopped's own, else Ctrl-C's SIGINT."""
    return exc.signum if isinstance(exc, Stopped) else signal.SIGINT


def _exit_stopped(exc: BaseException | None) -> None:
    """Ctrl-C or a termination signal: one line, and the shell's status for that signal (130, 143, 129)."""
    signum = _signum(exc)
    click.echo(f"Aborted ({signal.Signals(signum).name}).", err=True)
    sys.exit(128 + signum)


def main(argv: list[str] | None = None, restore_signals: bool = True) -> None:
    # a scheduler's SIGTERM (preemption, scancel, kill) or a closed terminal's SIGHUP stops a run as
    # Ctrl-C does (checkpoint kept, temp files removed) instead of killing it mid-write
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)):
            previous[sig] = signal.signal(sig, _stop_on_signal)
    try:
        _main(argv)
    finally:  # as they were, for a caller that runs main() in its own process (tests, notebooks); the
        # console script (restore_signals=False) keeps a stop signal's repeats ignored through its exit,
        # which takes torch a while: a default handler back in place would let one kill it (status -15)
        for sig, handler in previous.items():
            if restore_signals or signal.getsignal(sig) is not signal.SIG_IGN:
                signal.signal(sig, handler)


def _main(argv: list[str] | None) -> None:
    try:
        with exit_on_ctrl_c():   # the plugins' imports (torch, transformers): nothing is written yet
            h = host()
        if not getattr(cli, "_plugin_commands_added", False):  # once per process, however often main() runs
            add_plugin_commands(h, cli)
            cli._plugin_commands_added = True
        cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort as exc:
        _exit_stopped(exc.__cause__)   # click raises Abort from the KeyboardInterrupt
    except KeyboardInterrupt as exc:   # before click runs: while plugins import
        _exit_stopped(exc)
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()  # bare `promptopt`: the help text itself, as click prints it
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        # click's own format is Usage / Try --help / blank / Error; the project's is one line
        hint = f" ({exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        click.echo(f"Error: {one_line(exc.format_message())}{hint}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        _fail(exc, one_line(exc.format_message()), exc.exit_code)
    except PromptoptError as exc:
        _fail(exc, str(exc), exc.exit_code)
    except ValueError as exc:
        # lower layers (objectives, models, optimizers) report bad input as ValueError with a one-line reason
        from promptopt.models import ModelError
        from promptopt.objectives import ObjectivesError

        if isinstance(exc, (ObjectivesError, ModelError)):
            _fail(exc, str(exc), 2)
        raise
    except FileNotFoundError as exc:
        _fail(exc, str(exc), 2)
    except OSError as exc:
        # a read-only folder, a full disk: what the system said, on one line, no traceback (bad
        # input, 2, where the user chose the path; 1 where the machine failed); an OSError with no
        # errno is a library's own message (transformers: a model it cannot find): left as it is
        if exc.errno is None:
            raise
        what = f"{exc.filename}: " if exc.filename else ""
        right = ("check its permissions or give another path" if isinstance(exc, PermissionError)
                 else "the system refused it; free space or fix the device and run it again")
        _fail(exc, f"{what}{exc.strerror or one_line(str(exc))}; {right}", 2 if isinstance(exc, PermissionError) else 1)
    sys.exit(0)


def _fail(exc: BaseException, message: str, code: int) -> None:
    """One line on stderr and the exit status; with PROMPTOPT_DEBUG=1 the traceback first (of the
    error and what caused it: an optimizer's own exception behind the line naming it)."""
    if os.environ.get("PROMPTOPT_DEBUG") == "1":
        traceback.print_exception(exc, file=sys.stderr)
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)
