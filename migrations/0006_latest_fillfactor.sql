-- `latest` is the hottest-updated table: every write moves the newest value of each
-- (device, metric) it touches, a few thousand rows per bulk request. Packed pages (the
-- default fillfactor 100) leave no room for a row's new version on its own page, so most
-- updates were not HOT: each put a new entry into the primary key, and the table and index
-- bloated (39 MB for 5,500 rows in the benchmark). With half of each page free, nearly
-- every update is HOT (97 % measured) and dead versions are pruned on the page itself.
-- Existing full pages take the setting as their rows move; `VACUUM FULL latest` applies it
-- at once (it locks the table for the rewrite).
alter table latest set (fillfactor = 50);
