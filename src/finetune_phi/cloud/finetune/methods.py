"""The registry of fine-tuning methods, and what `phi finetune submit` does with any of them.

A new method is one module that defines a `FinetuneMethod` (`method.py`) and one line below
that registers it; `phi finetune submit` takes its options and `phi doctor` runs its checks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from finetune_phi.cloud.finetune import catalog, custom, serverless
from finetune_phi.cloud.finetune.data_assets import data_assets, upload_missing
from finetune_phi.cloud.finetune.method import (
    EXPERIMENT,
    MODEL_VERSION,
    FinetuneMethod,
    Option,
    Request,
)
from finetune_phi.cloud.finetune.models import latest_version
from finetune_phi.cloud.finetune.trainers import DEFAULT_TRAINER, TRAINERS
from finetune_phi.core.errors import UsageError

METHODS: dict[str, FinetuneMethod] = {}
"""Every method by name, in the order `--help` lists them."""
DEFAULT_METHOD = custom.METHOD.name


def register(method: FinetuneMethod) -> None:
    """Make `method` a choice of `phi finetune submit --method` and a part of `phi doctor`.
    An option that several methods take must be the same `Option` in each."""
    if method.name in METHODS:
        raise ValueError(f"a fine-tuning method {method.name!r} is registered already")
    unknown = [name for name in method.trainers if name not in TRAINERS]
    if unknown:
        raise ValueError(f"--method {method.name}: no trainer {unknown[0]!r} in trainers.TRAINERS")
    known = {option.dest: option for option in options()}
    for option in method.options:
        if known.get(option.dest, option) != option:
            raise ValueError(
                f"--method {method.name}: {option.flag} differs from the {option.flag} of "
                f"--method {', '.join(m.name for m in takers(known[option.dest]))}"
            )
    METHODS[method.name] = method


def options() -> list[Option]:
    """Every registered method's options, each once, in registration order."""
    found: dict[str, Option] = {}
    for method in METHODS.values():
        for option in method.options:
            found.setdefault(option.dest, option)
    return list(found.values())


def takers(option: Option) -> list[FinetuneMethod]:
    """The methods that take `option`."""
    return [method for method in METHODS.values() if option in method.options]


def runners(trainer: str) -> list[FinetuneMethod]:
    """The methods that run `trainer` (`--trainer NAME`)."""
    return [method for method in METHODS.values() if trainer in method.trainers]


for _method in (custom.METHOD, catalog.METHOD, serverless.METHOD):  # a new method: one more here
    register(_method)


@dataclass(frozen=True)
class SubmitOptions:
    """Everything `phi finetune submit` was asked for, for whichever method."""

    train_file: Path
    eval_file: Path
    method: str = DEFAULT_METHOD
    model: str | None = None
    """Default: the method's own (`FinetuneMethod.default_model`)."""
    experiment: str = EXPERIMENT
    values: Mapping[str, Any] = field(default_factory=dict)
    """Every method's options by dest, as given; a missing one has its default."""
    extra_args: tuple[str, ...] = ()
    """Further `--name value` pairs (TRL arguments for --method custom)."""
    phi_options: tuple[str, ...] = ()
    """The command's own options (for naming the closest to a misspelt one)."""
    verbose: bool = False
    """`phi --verbose`."""
    trainer: str = DEFAULT_TRAINER
    """`--trainer`: SFT on chat data, or DPO on preference pairs (`trainers.TRAINERS`)."""

    @classmethod
    def from_namespace(cls, args: Any, phi_options: Sequence[str] = ()) -> SubmitOptions:
        return cls(
            train_file=args.train_file,
            eval_file=args.eval_file,
            method=args.method,
            model=args.model,
            experiment=args.experiment,
            values={option.dest: getattr(args, option.dest) for option in options()},
            extra_args=tuple(args.trl_args),
            phi_options=tuple(phi_options),
            verbose=bool(getattr(args, "verbose", False)),
            trainer=getattr(args, "trainer", DEFAULT_TRAINER),
        )

    @property
    def finetune_method(self) -> FinetuneMethod:
        if self.method not in METHODS:
            raise UsageError(f"--method {self.method!r}: must be one of {', '.join(METHODS)}")
        return METHODS[self.method]

    def request(self) -> Request:
        """What the chosen method is asked."""
        method = self.finetune_method
        return Request(
            train_file=self.train_file,
            eval_file=self.eval_file,
            model=self.model or method.default_model,
            experiment=self.experiment,
            values={
                option.dest: self.values.get(option.dest, option.default)
                for option in method.options
            },
            extra_args=self.extra_args,
            phi_options=self.phi_options,
            verbose=self.verbose,
            trainer=self.trainer,
        )

    def check(self) -> None:
        """Refuse what the chosen method would silently ignore, then check the shared options
        and the method's own; nothing is sent."""
        method = self.finetune_method
        foreign = [
            option
            for option in options()
            if option not in method.options
            and self.values.get(option.dest, option.default) != option.default
        ]
        given = [option.flag for option in foreign]
        passing = [m for m in METHODS.values() if m.extra_arguments]
        extra = bool(self.extra_args) and not method.extra_arguments
        if extra:
            label = passing[0].extra_arguments if passing else "further arguments"
            given.insert(0, f"{label} ({self.extra_args[0]} ...)")
        if given:
            owners = [
                m
                for m in METHODS.values()
                if any(option in m.options for option in foreign) or (extra and m in passing)
            ]
            raise UsageError(
                f"{', '.join(given)}: not an option of --method {method.name}"
                + "".join(f"; --method {m.name} takes {only(m, method)}" for m in owners)
            )
        if self.trainer not in TRAINERS:
            raise UsageError(f"--trainer {self.trainer!r}: must be one of {', '.join(TRAINERS)}")
        if self.trainer not in method.trainers:
            others = " or ".join(m.name for m in runners(self.trainer))
            raise UsageError(
                f"--trainer {self.trainer}: --method {method.name} {method.trainer_refusal}"
                + (f"; --method {others} runs it" if others else "")
            )
        request = self.request()
        request.check()
        if method.offer is not None:
            method.offer.model(request.model)
        method.check(request)


def only(owner: FinetuneMethod, method: FinetuneMethod) -> str:
    """What `owner` takes that `method` does not, in words: "TRL arguments, --profile and
    --nodes"."""
    items = [owner.extra_arguments] if owner.extra_arguments else []
    items += [option.flag for option in owner.options if option not in method.options]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def pin_model_version(options: SubmitOptions, registry_models: Callable[[], Any]) -> SubmitOptions:
    """For a method that fine-tunes a registry model: `options` with --model-version set to
    the version the registry's `latest` label names now (one read through
    `registry_models()`, a registry client's `models`, made only then), unless it was given.
    What is then planned is what is sent."""
    method = options.finetune_method
    if MODEL_VERSION not in method.options or options.values.get(MODEL_VERSION.dest):
        return options
    assert method.offer is not None  # a registry model's method has an offer
    model = method.offer.model(options.request().model)
    version = latest_version(registry_models(), model)
    return replace(options, values={**options.values, MODEL_VERSION.dest: version})


def submit(
    ml_client: Any, options: SubmitOptions, job: Any, log: Callable[[str], None] = print
) -> Any:
    """Upload the data assets the workspace lacks, submit the job, return it as created."""
    assets = data_assets(options.train_file, options.eval_file, options.trainer)
    upload_missing(ml_client, assets, log)
    return ml_client.jobs.create_or_update(job)
