"""Flags that several programs take, each described once: an Annotated type per flag, whose
description `contract.cli.settings_flags` turns into the help; each program's settings class
gives its own default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

ModelRepository = Annotated[Path, Field(description="model repository")]
ModelAlias = Annotated[str, Field(description="model name or arch alias (mha/sha)")]
TokensPerRow = Annotated[int, Field(description="tokens per row")]
BindAddress = Annotated[str, Field(description="bind address")]
Port = Annotated[int, Field(ge=1, le=65535, description="port")]
