"""Readers and stores: slides, volumes, cohort manifests, feature stores, atomic writes."""
