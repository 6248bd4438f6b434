SELECT date_trunc('hour', ts) AS hour, count(*), min(value), max(value), avg(value)
FROM narrow.readings
WHERE series_id = :sid
  AND ts >= timestamptz '2025-06-01 12:00:00+00' AND ts < timestamptz '2025-07-01 12:00:00+00'
GROUP BY 1 ORDER BY 1;
