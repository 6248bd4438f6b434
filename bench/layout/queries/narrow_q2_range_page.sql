SELECT ts, value FROM narrow.readings
WHERE series_id = :sid
  AND ts < timestamptz '2025-06-01 12:00:00+00' + :off::int * interval '1 second'
ORDER BY ts DESC LIMIT 100;
