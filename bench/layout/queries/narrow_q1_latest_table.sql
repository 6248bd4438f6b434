SELECT s.metric, l.ts, l.value
FROM narrow.latest l JOIN narrow.series s ON s.id = l.series_id
WHERE l.device_id = :d;
