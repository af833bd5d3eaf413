"""FastAPI dependencies shared by both APIs: the service, and the model a route is about.

A route that needs a model takes `ReadyModel` (loaded and serving) or `KnownModel` (any state);
the lookup and its refusals (`UnknownModel`, `ModelNotReady`) are the core's, their status the
route's protocol's (service.http.protocol).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.catalog import AnyModel, Model
from service.front.service import Service


def get_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


def known_model(name: str, svc: ServiceDep) -> AnyModel:
    return svc.known(name)


def ready_model(name: str, svc: ServiceDep) -> Model:
    return svc.model(name)


KnownModel = Annotated[AnyModel, Depends(known_model)]
ReadyModel = Annotated[Model, Depends(ready_model)]
