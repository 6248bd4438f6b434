SELECT ts, metric_set, vals FROM wide.readings
WHERE device_id = :d ORDER BY ts DESC LIMIT 1;
