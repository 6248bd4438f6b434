WITH top AS (  -- newest reading per active device = newest of its series; rank, then fetch values for 100
  SELECT s.device_id, max(r.ts) AS ts
  FROM devices d
  JOIN narrow.series s ON s.device_id = d.id
  CROSS JOIN LATERAL (SELECT ts FROM narrow.readings r
                      WHERE r.series_id = s.id AND r.ts > timestamptz '2025-06-30 12:00:00+00'
                      ORDER BY ts DESC LIMIT 1) r
  WHERE d.status = 'active'
  GROUP BY s.device_id ORDER BY max(r.ts) DESC LIMIT 100)
SELECT t.device_id, t.ts, jsonb_object_agg(s.metric, r.value) AS metrics
FROM top t JOIN narrow.series s ON s.device_id = t.device_id
JOIN narrow.readings r ON r.series_id = s.id AND r.ts = t.ts
GROUP BY t.device_id, t.ts ORDER BY t.ts DESC;
