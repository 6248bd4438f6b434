SELECT date_trunc('hour', ts) AS hour, count(vals[:m + 1]), min(vals[:m + 1]), max(vals[:m + 1]), avg(vals[:m + 1])
FROM wide.readings
WHERE device_id = :d
  AND ts >= timestamptz '2025-06-01 12:00:00+00' AND ts < timestamptz '2025-07-01 12:00:00+00'
GROUP BY 1 ORDER BY 1;
