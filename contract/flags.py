"""Flags that several programs take, each described once: an Annotated type per flag, whose
description `contract.cli.settings_flags` turns into the help; each program's settings class
gives its own default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

ModelRepository = Annotated[Path, Field(description="model repository")]
ModelAlias = Annotated[str, Field(description="model name or arch alias (mha/sha)")]
TokensPerRow = Annotated[int, Field(description="tokens per row")]
BindAddress = Annotated[str, Field(description="bind address")]
Port = Annotated[int, Field(description="port")]
ModelPreset = Annotated[Literal["tiny", "small", "base"], Field(description="model size")]
BatchSizes = Annotated[str, Field(description="comma list of batch sizes")]
TorchThreads = Annotated[int, Field(ge=0, description="CPU threads for torch (0: torch's)")]
ModelFolders = Annotated[str | None, Field(description="comma list of model folders (default: every model)")]
BatchRows = Annotated[int, Field(description="rows")]
