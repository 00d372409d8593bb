"""docs/api.md works as written: every python block, in order, in one fresh folder."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_every_example_of_the_api_page_runs(tmp_path, monkeypatch, capsys) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{DOC.name} block {number}", "exec"), namespace)
    _, err = capsys.readouterr()
    assert err == "", err  # quiet unless verbose=True: no progress, tips or warnings
    # what the comments of the page say
    assert namespace["run"].dir == (tmp_path / "runs" / "shapes").absolute()
    assert len(namespace["RunDir"](namespace["run"].dir).training_curve()) == 3
    assert sorted(k for k in namespace["metrics"] if k.endswith("top1")) == [
        "knn200_top1",
        "knn20_top1",
        "linear_top1",
    ]
    assert namespace["vectors"].shape == (2, 64) and str(namespace["vectors"].dtype) == "float32"
    assert namespace["encoder"].embed(namespace["batch"], projection=True).shape == (5, 128)
    assert namespace["results"].shape[0] == 3 and (namespace["results"]["status"] == "ok").all()
    assert namespace["run"].training.global_batch == 64
    embedded = namespace["embedded"]
    assert embedded.vectors.shape == (128, 64) and (embedded.items["split"] == "test").all()
    assert sorted(p.name for p in embedded.files) == ["embeddings.parquet", "faiss.index", "index.csv"]
    result = namespace["result"]
    assert (
        result.clusters.n_clusters == 2 and (tmp_path / "c.csv").is_file() and (tmp_path / "c.json").is_file()
    )
    # hand-computed: color splits {sky} from {apple, cherry}; H(T) - H(T|Z) = 1.459 - 0.459 = 1 bit
    assert abs(result.stats.I_Z_T - 1.0) < 1e-9
    assert (tmp_path / "compare_out" / "report.md").is_file()
