"""Results for hospital systems: DICOM Structured Reports and Segmentations (highdicom), QuPath GeoJSON.

``codes`` maps graph concepts to DICOM codes, ``subject`` makes the de-identified patient/study every object shares,
``sr`` writes zero-shot findings as a TID 1500 measurement report and ``seg`` writes masks as DICOM SEG.
"""
