-- Extra DuckDB views. Every catalogue table (orchestration/tables.py) already has a view of
-- its own name over delta_scan('{lake}/tables/<name>') (the delta + httpfs extensions load
-- from the duckdb-extension-* wheels; nothing is installed from the network); {lake} is the
-- lake location, {sql} this folder.
-- The thresholds data file is queryable too, so tiers can be re-cut by editing data.
CREATE OR REPLACE VIEW thresholds AS SELECT * FROM read_csv('{sql}/thresholds.csv', header = true, columns = {'name': 'VARCHAR', 'value': 'VARCHAR', 'stage': 'VARCHAR', 'description': 'VARCHAR'});
