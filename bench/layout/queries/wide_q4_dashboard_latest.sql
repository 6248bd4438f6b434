SELECT l.device_id, l.ts, l.metric_set, l.vals
FROM wide.latest l JOIN devices d ON d.id = l.device_id
WHERE d.status = 'active' AND l.ts > timestamptz '2025-06-30 12:00:00+00'
ORDER BY l.ts DESC LIMIT 100;
