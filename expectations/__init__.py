"""Great Expectations suites: data contracts run as blocking Dagster asset checks."""
