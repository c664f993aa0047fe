"""mummi-bench analysis runs and reports the analysis rate next to ddcMD's."""

from __future__ import annotations

import argparse

from mummi.analysis import bench


def test_bench_reports_rates_on_a_small_membrane() -> None:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    result = bench.run(
        parser.parse_args(["--lipids-per-cell", "4", "--beads-per-lipid", "3", "--frames", "5", "--mock-frames", "2"])
    )
    assert result["lipids"] == 200 and result["frames"] == 5
    assert result["analysis_frames_per_s"] > 0 and result["mock_sim_frames_per_s"] > 0 and result["counted_pairs"] > 0
    assert abs(result["ddcmd_frames_per_s"] - 1.02e6 / 100 / 86400) < 1e-3  # 1.02 us/day, a frame every 100 ps
    assert result["analysis_margin_over_ddcmd"] > 1
