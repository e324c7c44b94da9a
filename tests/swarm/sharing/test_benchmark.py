from __future__ import annotations

from benchmarks.aggregate import main


def test_aggregate_benchmark_quick_reports_ratio_and_bitdelta(capsys):
    r = main(["--quick", "--json"])
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("{")
    assert r["ratio"] == r["value"] / r["reference"] and r["rates"]["mean"] > 0
    assert r["bitdelta_ratio"] >= 25  # 512-float entries
    assert 0.0 < r["bitdelta_recall_at_10"] <= 1.0 and r["bitdelta_cosine"] > 0.9
