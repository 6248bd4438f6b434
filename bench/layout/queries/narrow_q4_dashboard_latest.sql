WITH top AS (  -- rank devices first, build the per-device values only for the 100 shown
  SELECT l.device_id, max(l.ts) AS ts
  FROM narrow.latest l JOIN devices d ON d.id = l.device_id
  WHERE d.status = 'active' AND l.ts > timestamptz '2025-06-30 12:00:00+00'
  GROUP BY l.device_id ORDER BY max(l.ts) DESC LIMIT 100)
SELECT t.device_id, t.ts, jsonb_object_agg(s.metric, l.value) AS metrics
FROM top t JOIN narrow.latest l ON l.device_id = t.device_id JOIN narrow.series s ON s.id = l.series_id
GROUP BY t.device_id, t.ts ORDER BY t.ts DESC;
