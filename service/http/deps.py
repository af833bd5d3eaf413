"""FastAPI dependencies shared by both APIs: the service, and the model a route is about.

A route that needs a model takes `ReadyModel` (loaded and serving) or `KnownModel` (any state);
the lookup and its refusals (`UnknownModel`, `ModelNotReady`) are the core's, their status the
route's protocol's (service.http.protocol).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.catalog import AnyModel, Model
from service.front.registry import Registry


def get_registry(request: Request) -> Registry:
    return request.app.state.registry


RegistryDep = Annotated[Registry, Depends(get_registry)]


def known_model(name: str, svc: RegistryDep) -> AnyModel:
    return svc.known(name)


def ready_model(name: str, svc: RegistryDep) -> Model:
    return svc.model(name)


KnownModel = Annotated[AnyModel, Depends(known_model)]
ReadyModel = Annotated[Model, Depends(ready_model)]
