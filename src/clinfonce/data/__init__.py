"""Datasets, the metadata table contract, and augmentations."""
