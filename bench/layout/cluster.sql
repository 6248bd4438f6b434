-- Extra experiment: physical order. Rewrites every partition in primary-key order (what a
-- nightly job could do to a closed day partition), then re-run q2/q3:
--   psql -d pulse_layout -f cluster.sql && ./queries.sh 'narrow_q[23]*' && ./queries.sh 'wide_q[23]*'
\set ON_ERROR_STOP on
\timing on
CLUSTER narrow.readings USING readings_pkey;
CLUSTER wide.readings USING readings_pkey;
VACUUM (ANALYZE) narrow.readings, wide.readings;
