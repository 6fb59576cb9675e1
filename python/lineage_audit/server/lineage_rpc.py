"""LineageService over gRPC: the same reads as the HTTP side (Marquez shape), findings, and
lineage path proofs."""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf import struct_pb2

from .._generated.lineage_audit.v1 import lineage_pb2, lineage_pb2_grpc
from ..lineage.events import EventError
from ..lineage.service import LineageService
from .auth import Authenticator
from .errors import RequestError, status_for

__all__ = ["LineageServicer"]


def _struct(obj: dict) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(obj)
    return out


def _request_error(exc: EventError) -> RequestError:
    code = (grpc.StatusCode.NOT_FOUND if "not in the lineage graph" in exc.problem
            else grpc.StatusCode.INVALID_ARGUMENT)  # fmt: skip
    return RequestError(code, str(exc))


class LineageServicer(lineage_pb2_grpc.LineageServiceServicer):
    def __init__(self, service: LineageService, auth: Authenticator) -> None:
        self.service = service
        self.auth = auth

    async def _run(self, context, fn, *args):
        try:
            self.auth.identify(context)
            return await asyncio.get_running_loop().run_in_executor(
                self.service.executor, fn, *args
            )
        except EventError as exc:
            await context.abort(*status_for(_request_error(exc)))
        except Exception as exc:
            await context.abort(*status_for(exc))

    async def GetLineage(self, request, context) -> lineage_pb2.LineageGraph:
        graph = await self._run(context, self.service.lineage, request.node_id, request.depth or 20)
        return lineage_pb2.LineageGraph(
            graph=[
                lineage_pb2.LineageNode(
                    id=node["id"],
                    type=node["type"],
                    data=_struct(node["data"]),
                    in_edges=[lineage_pb2.LineageEdge(**e) for e in node["inEdges"]],
                    out_edges=[lineage_pb2.LineageEdge(**e) for e in node["outEdges"]],
                )
                for node in graph["graph"]
            ]
        )

    async def GetFindings(self, request, context) -> lineage_pb2.Findings:
        k = request.k or 3
        if k < 2:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"k: expected >= 2 (got {k})")
        found = await self._run(context, self.service.findings, k)
        return lineage_pb2.Findings(findings=[_struct(f) for f in found])

    async def GetPathProof(self, request, context) -> lineage_pb2.PathProof:
        bundle = await self._run(context, self.service.path_proof_json, request.node_id)
        return lineage_pb2.PathProof(json=bundle)
