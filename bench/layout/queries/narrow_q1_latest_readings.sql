SELECT s.metric, r.ts, r.value
FROM narrow.series s
CROSS JOIN LATERAL (SELECT ts, value FROM narrow.readings r
                    WHERE r.series_id = s.id ORDER BY ts DESC LIMIT 1) r
WHERE s.device_id = :d;
