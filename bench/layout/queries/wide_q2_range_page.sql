SELECT ts, vals[:m + 1] AS value FROM wide.readings
WHERE device_id = :d
  AND ts < timestamptz '2025-06-01 12:00:00+00' + :off::int * interval '1 second'
ORDER BY ts DESC LIMIT 100;
