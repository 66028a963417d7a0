"""The dataset report (Figure 3 histograms and the summary) as Dagster metadata."""

REPORT_ASSET = "dataset_report"
