"""``clinfonce data check``: what a dataset holds and what is wrong with it, without training."""

from __future__ import annotations

from typing import Any

from clinfonce.data.dataset import SPLITS, ImageDataset


def dataset_summary(dataset: ImageDataset) -> dict[str, Any]:
    """Counts of images per split, classes, auxiliary columns and their missing values, unreadable files.

    Returns a JSON-serialisable dict. ``problems`` counts what stops or changes a run: unreadable files.
    Missing auxiliary values are not problems (stage 1 gives such a row a singleton cluster, as the README
    says): they are counted in ``missing_values`` and said in ``remarks``, as are unlabelled images.
    """
    table = dataset.table
    aux = dataset.aux
    columns = [*aux.attributes, *aux.tags]
    missing = {column: int(table[column].isna().sum()) for column in columns if column in table.columns}
    hierarchy = aux.hierarchy if isinstance(aux.hierarchy, str) or aux.hierarchy is None else "parents map"
    unlabelled = int((table["label"] < 0).sum())
    remarks = [
        f"{column}: {count} missing value(s); those images get a cluster of their own in stage 1"
        for column, count in missing.items()
        if count
    ]
    if unlabelled:
        remarks.append(f"{unlabelled} image(s) without a label: trained on, never scored")
    return {
        "dataset": dataset.name,
        "root": str(dataset.root) if dataset.root else None,
        "images": len(table),
        "splits": {split: int((table["split"] == split).sum()) for split in SPLITS},
        "classes": dataset.n_classes,
        "unlabelled_images": unlabelled,
        "image_size": list(dataset.image_size),
        "attributes": list(aux.attributes),
        "tags": list(aux.tags),
        "hierarchy": hierarchy,
        "missing_values": missing,
        "notes": aux.notes,
        "bad_files": [{"path": path, "reason": reason} for path, reason in dataset.skipped.items()],
        "remarks": remarks,
        "problems": len(dataset.skipped),
    }


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """What ``clinfonce data check`` prints of a :func:`dataset_summary`."""
    splits = ", ".join(f"{k} {v}" for k, v in summary["splits"].items())
    lines = [
        f"{summary['dataset']}: {summary['images']} images ({splits}), {summary['classes']} classes",
        f"auxiliary: attributes {len(summary['attributes'])}, tags {len(summary['tags'])}, "
        f"hierarchy {summary['hierarchy']}",
    ]
    if summary["notes"]:
        lines.append(f"notes: {summary['notes']}")
    lines += [f"note: {remark}" for remark in summary["remarks"]]
    lines += [f"bad file: {bad['path']}: {bad['reason']}" for bad in summary["bad_files"]]
    lines.append(
        "no problems found" if not summary["problems"] else f"{summary['problems']} problem(s) found"
    )
    return lines
