"""What a fine-tuning method is: a name, a settings section, and how it changes a backbone, saves and loads.

Each method module of this package defines one `METHOD`; the package collects them into `METHODS` (see
`__init__.py`), and the trial config, preflight checks, rankings, reports and exports all read that registry.
Adding a method is adding one module here, as PEFT adds a tuner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, BeforeValidator, ConfigDict

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel

TrainableModel: TypeAlias = "PreTrainedModel | PeftModel"
Layers = Annotated[Literal["all"] | list[int] | str, BeforeValidator(lambda v: [v] if isinstance(v, int) else v)]
LAYERS_HELP = ("layers to adapt, numbered from 0 (an encoder-decoder numbers its decoder layers after its "
               "encoder's): 'all', a list [0, 1, 5], indices and inclusive ranges '0-5' or '0-2,7', "
               "or 'not ...' for every layer except those, e.g. 'not 0-1'")


class MethodSettings(BaseModel):
    """A method's settings: a section of the trial config named after the method (`lora.rank`, ...)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


@dataclass(frozen=True)
class Method:
    """One fine-tuning method.

    `apply(backbone, config)` returns the model that trains (the task head always trains; what else does is the
    method's choice); `save(model, folder)` writes only what trained; `load(fresh_backbone, folder)` rebuilds it.
    `shown` names the settings worth a column in rankings and a "best per" section in reports. `export_format`
    says how an exported folder loads (`full`, `peft` or `adapters`, see `sweeper.trained.export`), and
    `mergeable` whether it can be folded into full weights.
    """

    name: str
    summary: str
    apply: Callable[[PreTrainedModel, Any], TrainableModel]
    save: Callable[[Any, Path], None]
    load: Callable[[PreTrainedModel, Path], TrainableModel]
    settings: type[MethodSettings] | None = None
    shown: tuple[str, ...] = ()
    export_format: Literal["full", "peft", "adapters"] = "full"
    mergeable: bool = False
