SELECT date_trunc('hour', ts) AS hour, count(v), min(v), max(v), avg(v)
FROM (SELECT ts, (metrics ->> (ARRAY['temperature','humidity','pressure'])[:m + 1])::float8 AS v
      FROM wjson.readings
      WHERE device_id = :d
        AND ts >= timestamptz '2025-06-01 12:00:00+00' AND ts < timestamptz '2025-07-01 12:00:00+00'
      OFFSET 0) x  -- OFFSET 0: extract the metric once per row, not once per aggregate
GROUP BY 1 ORDER BY 1;
