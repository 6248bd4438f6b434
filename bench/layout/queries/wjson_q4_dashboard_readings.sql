SELECT d.id AS device_id, r.ts, r.metrics
FROM devices d
CROSS JOIN LATERAL (SELECT ts, metrics FROM wjson.readings r
                    WHERE r.device_id = d.id AND r.ts > timestamptz '2025-06-30 12:00:00+00'
                    ORDER BY ts DESC LIMIT 1) r
WHERE d.status = 'active'
ORDER BY r.ts DESC LIMIT 100;
