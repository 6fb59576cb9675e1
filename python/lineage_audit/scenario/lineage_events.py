"""The OpenLineage events of ATLAS-FX, as the emitters would send them (openlineage-python).

Who emits what:

- the deployer (the bank): the hourly ingest of the eleven sources into the asset
  ``deployer:fx-news-inputs``, the daily fine-tune of ATLAS-FX on it, the commentary runs and
  their delivery to the newswire;
- FXWire, if vendors cooperate: its quarterly refresh of ``fx-summarizer`` (first declaring
  only its licensed news) and the digest built with it; at ``disclosure_hour`` it re-emits the
  refresh run (event type ``OTHER``, same run id) with its full inputs, which include the
  newswire that carries ATLAS-FX's commentary;
- each cooperating source: a daily ``publish`` run naming what it is built from.

Every dataset carries an explicit version, so the graph is built at version level and the
re-entry is a real path through versions (the commentary was written in the previous quarter,
before the refresh read it). Run ids are UUIDs derived from the seed: the same seed gives the
same events.
"""

from __future__ import annotations

import uuid

import attr
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import DatasetFacet, dataset_version_dataset

from ..lineage.events import MODEL_FACET
from .atlas_fx import (
    ASSET_DATASET,
    COMMENTARY,
    MODEL_DATASET,
    MODEL_ID,
    SYNDICATED,
    VENDOR_LICENSED,
    VENDOR_MODEL,
    VENDOR_PRODUCT,
    Scenario,
)

__all__ = ["ModelDatasetFacet", "lineage_events"]

DEPLOYER = "https://bank.example/atlas-fx/pipeline"
VENDOR = "https://fxwire.example/lineage"
COMMENTARY_QUARTER = "2026-10"  # the quarter of commentary the refresh read


@attr.define
class ModelDatasetFacet(DatasetFacet):
    """lineage-audit's model facet: this dataset is a model (DESIGN §6, Tier 2)."""

    modelId: str

    @staticmethod
    def _get_schema() -> str:
        return "https://lineage-audit.dev/spec/facets/1-0-0/ModelDatasetFacet.json"


def _dataset(cls, key: str | tuple[str, str], version: str, model: str | None = None):
    namespace, name = key.split(":", 1) if isinstance(key, str) else key
    facets: dict = {"version": dataset_version_dataset.DatasetVersionDatasetFacet(version)}
    if model is not None:
        facets[MODEL_FACET] = ModelDatasetFacet(modelId=model)
    return cls(namespace=namespace, name=name, facets=facets)


class _Emitter:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.events: list[tuple[float, RunEvent]] = []

    def run_id(self, name: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"atlas-fx/{self.scenario.seed}/{name}"))

    def emit(
        self,
        hour: float,
        job: str,
        inputs,
        outputs,
        *,
        producer: str = DEPLOYER,
        run: str | None = None,
        state: RunState = RunState.COMPLETE,
    ) -> None:
        namespace = "fxwire" if producer == VENDOR else job.split(".", 1)[0]
        event = RunEvent(
            eventType=state,
            eventTime=self.scenario.rfc3339(hour),
            run=Run(runId=self.run_id(run or f"{job}@{hour}")),
            job=Job(namespace=namespace, name=job),
            inputs=[_dataset(InputDataset, *i) for i in inputs],
            outputs=[_dataset(OutputDataset, *o) for o in outputs],
            producer=producer,
        )
        self.events.append((hour, event))


def _history(e: _Emitter, vendors: bool) -> None:
    """Before t0: last quarter's training and commentary; the vendor's refresh and digest."""
    feeds = [(s.id, "2026Q3") for s in e.scenario.sources]
    e.emit(-2200, "deployer.fx-news.ingest", feeds, [(ASSET_DATASET, "2026Q3")])
    e.emit(
        -2190,
        "deployer.atlas-fx.train",
        [(ASSET_DATASET, "2026Q3")],
        [(MODEL_DATASET, "2026.3", MODEL_ID)],
    )
    e.emit(
        -1500,
        "deployer.atlas-fx.commentary",
        [(MODEL_DATASET, "2026.3")],
        [(COMMENTARY, COMMENTARY_QUARTER)],
    )
    e.emit(
        -1499,
        "deployer.commentary.syndicate",
        [(COMMENTARY, COMMENTARY_QUARTER)],
        [(SYNDICATED, COMMENTARY_QUARTER)],
    )
    if vendors:
        e.emit(
            -48,
            "fxwire.quarterly-refresh",
            [(VENDOR_LICENSED, "2026Q4")],
            [(VENDOR_MODEL, "2026Q4", "fxwire-summarizer")],
            producer=VENDOR,
            run="refresh",
        )
        e.emit(
            -24,
            "fxwire.digest",
            [(VENDOR_MODEL, "2026Q4")],
            [(VENDOR_PRODUCT, "2026Q4")],
            producer=VENDOR,
        )


def _day(e: _Emitter, hour: int) -> None:
    """Each cooperating source publishes its day's version at midnight."""
    day = hour // 24
    for source in e.scenario.sources:
        if not e.scenario.cooperates(source):
            continue
        upstream = (source.upstream, "2026Q4" if source.via_vendor else f"d{day}")
        e.emit(
            hour,
            f"{source.name}.publish",
            [upstream],
            [(source.id, f"d{day}")],
            producer=f"https://{source.name}.example/lineage",
        )


def _deployer_hour(e: _Emitter, hour: int) -> None:
    day = hour // 24
    feeds = [(s.id, f"d{day}") for s in e.scenario.sources]
    e.emit(hour + 0.5, "deployer.fx-news.ingest", feeds, [(ASSET_DATASET, f"h{hour:03d}")])
    model = (MODEL_DATASET, "2026.3" if day == 0 else f"2026.3-ft{day}")
    if hour % 24 == 12:
        e.emit(
            hour + 0.6,
            "deployer.atlas-fx.commentary",
            [model, (ASSET_DATASET, f"h{hour:03d}")],
            [(COMMENTARY, f"d{day}")],
        )
        e.emit(
            hour + 0.7,
            "deployer.commentary.syndicate",
            [(COMMENTARY, f"d{day}")],
            [(SYNDICATED, f"d{day}")],
        )
    if hour % 24 == 23:
        e.emit(
            hour + 0.8,
            "deployer.atlas-fx.finetune",
            [model, (ASSET_DATASET, f"h{hour:03d}")],
            [(MODEL_DATASET, f"2026.3-ft{day + 1}", MODEL_ID)],
        )


def lineage_events(scenario: Scenario) -> list[tuple[float, RunEvent]]:
    """Every event of the replay with the scenario hour it is sent at, in sending order."""
    e = _Emitter(scenario)
    vendors = scenario.cooperating_vendors
    _history(e, vendors)
    for hour in range(scenario.end_hour):
        if hour % 24 == 0:
            _day(e, hour)
        _deployer_hour(e, hour)
        if vendors and hour == scenario.disclosure_hour:
            e.emit(
                hour,
                "fxwire.quarterly-refresh",
                [(VENDOR_LICENSED, "2026Q4"), (SYNDICATED, COMMENTARY_QUARTER)],
                [(VENDOR_MODEL, "2026Q4", "fxwire-summarizer")],
                producer=VENDOR,
                run="refresh",
                state=RunState.OTHER,
            )
    return sorted(e.events, key=lambda item: item[0])
