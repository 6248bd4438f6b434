SELECT ts, metric_set, vals FROM wide.latest WHERE device_id = :d;
