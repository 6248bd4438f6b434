SELECT ts, metrics FROM wjson.readings
WHERE device_id = :d ORDER BY ts DESC LIMIT 1;
