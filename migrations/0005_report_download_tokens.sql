-- The download link of a "report ready" e-mail: a random token that stands in for an API
-- key on that one report's download. Only its SHA-256 is stored; null when the report was
-- not requested with an e-mail (no link was ever handed out).

alter table reports add column download_token_hash bytea;
