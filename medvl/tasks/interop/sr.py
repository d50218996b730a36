"""Zero-shot findings as a DICOM Structured Report: a TID 1500 measurement report written with highdicom.

One measurement group (TID 1501) per ranked class: its finding type is the concept's code (:mod:`.codes`), it
records the model (algorithm name and version) and the class probability (DCM 122157 "Probability", unit UCUM "1").
A last group carries the decision as an impression (DCM 121073): the finding chosen (after the hierarchy back-off)
or, when the model abstained, SCT 373068000 "Undetermined". The report's qualitative evaluations say that it is
research output, and which findings fall back to a private coding scheme. The document is de-identified
(:mod:`.subject`) and written atomically; a class without a code stops it before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvl.atomic import atomic_path
from medvl.errors import InputError, require
from medvl.io.deid import Deidentifier
from medvl.tasks.interop.codes import PRIVATE_SCHEMES, ConceptCode, code_concepts
from medvl.tasks.interop.subject import MANUFACTURER, subject_dataset

__all__ = ["INPUT_MODALITY", "RESEARCH_NOTE", "ModelInfo", "build_zeroshot_sr", "coding_note", "write_zeroshot_sr"]

RESEARCH_NOTE = "Research output of medvl, not for clinical use: zero-shot model predictions, not a diagnosis."
#: case modality -> (DICOM Modality of the evidence, procedure reported)
_PROCEDURES = {"slide": ("SM", ("363679005", "SCT", "Imaging procedure")),
               "CT": ("CT", ("77477000", "SCT", "Computed tomography")),
               "image": ("OT", ("363679005", "SCT", "Imaging procedure"))}
#: what ``classify_case`` says it read -> the case modality of the report
INPUT_MODALITY = {"slide features": "slide", "embedding (volume)": "CT", "embedding (image)": "image", "image": "image"}


@dataclass(frozen=True)
class ModelInfo:
    """The model that produced the findings (recorded as algorithm identification)."""

    name: str
    version: str

    @classmethod
    def of(cls, source: str | Path) -> ModelInfo:
        """A checkpoint folder's name, versioned by its weights' SHA-256; a registered model by its name."""
        from medvl import __version__
        from medvl.hashing import sha256_file

        path = Path(source)
        weights = path / "model.safetensors"
        if path.is_dir() and weights.is_file():
            return cls(path.name, f"sha256:{sha256_file(weights)[:16]} medvl {__version__}")
        return cls(str(source), f"medvl {__version__}")


def coding_note(codes: dict[str, ConceptCode]) -> str:
    """What the report says about its codes (standard, or the private fallback for which findings)."""
    private = [c for c in codes.values() if not c.standard]
    if not private:
        return "Every finding is coded in a standard scheme (SNOMED CT or ICD-10)."
    schemes = sorted({c.scheme for c in private})
    names = ", ".join(f"{c.meaning} ({c.concept_id})" for c in private[:5])
    return (f"{len(private)} finding(s) have no SNOMED CT or ICD-10 code in medvl's knowledge graph and are coded "
            f"with their ontology id under the private scheme(s) {', '.join(schemes)}: {names}.")


def _coded(hd: Any, code: tuple[str, str, str]) -> Any:
    return hd.sr.CodedConcept(*code)


def _finding_group(hd: Any, i: int, code: ConceptCode, probability: float, algorithm: Any) -> Any:
    probability_item = hd.sr.Measurement(
        name=_coded(hd, ("122157", "DCM", "Probability")), value=round(float(probability), 6),
        unit=_coded(hd, ("1", "UCUM", "no units")), algorithm_id=algorithm)
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"finding {i + 1}"),
        finding_type=code.coded(), algorithm_id=algorithm, measurements=[probability_item])


def _decision_group(hd: Any, result: dict[str, Any], codes: dict[str, ConceptCode], algorithm: Any) -> Any:
    if result.get("abstained") or result.get("prediction") is None:
        value = _coded(hd, ("373068000", "SCT", "Undetermined"))
    else:
        value = codes[result["prediction"]].coded()
    evaluation = hd.sr.QualitativeEvaluation(name=_coded(hd, ("121073", "DCM", "Impression")), value=value)
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="model decision"),
        algorithm_id=algorithm, qualitative_evaluations=[evaluation])


def _notes_container(hd: Any, notes: list[str]) -> Any:
    from highdicom.sr import RelationshipTypeValues as Rel

    container = hd.sr.ContainerContentItem(name=_coded(hd, ("C0034375", "UMLS", "Qualitative Evaluations")),
                                           relationship_type=Rel.CONTAINS)
    container.ContentSequence = [hd.sr.TextContentItem(name=_coded(hd, ("121106", "DCM", "Comment")), value=note,
                                                       relationship_type=Rel.CONTAINS) for note in notes]
    return container


def _coding_schemes(codes: dict[str, ConceptCode]) -> list[Any]:
    from pydicom.dataset import Dataset

    items = []
    for scheme in sorted({c.scheme for c in codes.values() if not c.standard}):
        info = next(p for p in PRIVATE_SCHEMES.values() if p.designator == scheme)
        item = Dataset()
        item.CodingSchemeDesignator = scheme
        item.CodingSchemeName = info.name
        item.CodingSchemeResponsibleOrganization = info.responsible_organization
        items.append(item)
    return items


def build_zeroshot_sr(result: dict[str, Any], graph: Any, model: ModelInfo, case_key: str,
                      modality: str = "slide") -> tuple[Any, dict[str, Any]]:
    """The SR dataset for one zero-shot decision record (``classify_case(...)["result"]``) and a summary."""
    hd = require("highdicom", "interop", "DICOM SR output")
    if modality not in _PROCEDURES:
        raise InputError(None, f"DICOM SR for modality '{modality}' (known: {', '.join(_PROCEDURES)})")
    top = result.get("top") or []
    codes = code_concepts(graph, [(t["id"], t["name"]) for t in top])
    dicom_modality, procedure = _PROCEDURES[modality]
    algorithm = hd.sr.AlgorithmIdentification(name=model.name[:64], version=model.version[:64])
    groups = [_finding_group(hd, i, codes[t["id"]], t["probability"], algorithm) for i, t in enumerate(top)]
    groups.append(_decision_group(hd, result, codes, algorithm))
    device = hd.sr.DeviceObserverIdentifyingAttributes(uid=hd.UID(), name=MANUFACTURER, model_name=model.name[:64])
    context = hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=_coded(hd, ("121007", "DCM", "Device")), observer_identifying_attributes=device))
    report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=_coded(hd, procedure),
                                     imaging_measurements=groups)
    notes = [RESEARCH_NOTE, coding_note(codes)]
    report[0].ContentSequence.append(_notes_container(hd, notes))
    subject = subject_dataset(case_key, dicom_modality)
    subject.SOPClassUID, subject.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", hd.UID()
    subject.SeriesInstanceUID = hd.UID()
    deid = Deidentifier()
    sr = hd.sr.Comprehensive3DSR(
        evidence=[subject], content=report[0], series_instance_uid=deid.remap_uid(f"medvl.sr.{case_key}"),
        series_number=900, sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER,
        record_evidence=False)
    # the case's source is not a DICOM instance: there is no image evidence to list
    if "CurrentRequestedProcedureEvidenceSequence" in sr:
        del sr.CurrentRequestedProcedureEvidenceSequence
    sr.SeriesDescription = "medvl zero-shot findings (research)"
    sr.PatientIdentityRemoved = "YES"
    sr.DeidentificationMethod = subject.DeidentificationMethod
    if _coding_schemes(codes):
        sr.CodingSchemeIdentificationSequence = _coding_schemes(codes)
    summary = {"findings": [codes[t["id"]].to_dict() | {"probability": t["probability"]} for t in top],
               "decision": result.get("prediction"), "abstained": bool(result.get("abstained")), "notes": notes,
               "private_codes": sum(not c.standard for c in codes.values())}
    return sr, summary


def write_zeroshot_sr(out: str | Path, result: dict[str, Any], graph: Any, model: ModelInfo, case_key: str,
                      modality: str = "slide") -> dict[str, Any]:
    """Write the SR of one zero-shot decision to ``out`` (atomically); returns the summary with the path."""
    sr, summary = build_zeroshot_sr(result, graph, model, case_key, modality)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        sr.save_as(tmp, enforce_file_format=True)
    return {**summary, "path": str(out), "sop_instance_uid": str(sr.SOPInstanceUID)}
