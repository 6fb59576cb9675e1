"""Engine errors as gRPC status codes, with the engine's field-named message."""

from __future__ import annotations

import grpc

from ..divergence.errors import BaselineError, EncoderMismatch, InputError

__all__ = ["RequestError", "status_for"]


class RequestError(Exception):
    """A request refused with ``code``; ``message`` names the field and the problem."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message a client sees for ``exc``."""
    if isinstance(exc, RequestError):
        return exc.code, exc.message
    if isinstance(exc, InputError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, EncoderMismatch):
        return grpc.StatusCode.FAILED_PRECONDITION, f"embeddings.encoder_id: {exc}"
    if isinstance(exc, BaselineError):  # e.g. a batch size the baseline has no null for
        return grpc.StatusCode.INVALID_ARGUMENT, f"embeddings.shape: {exc}"
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}"
