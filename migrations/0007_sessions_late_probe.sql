-- Writes look for completed sessions that a new reading falls into, one probe of
-- sessions_late_idx per written device (src/modules/sessions/late.ts). This index (the
-- tenant's completed sessions) offered the planner another way: with statistics taken
-- while few sessions were completed, it read every completed session on each write
-- (2,848 of them, 1.9 ms of a 3.2 ms flush in the benchmark) instead of probing per
-- device. Its one reader, an import's "any completed session at all?" check, is gone:
-- the per-device probes cost less than that check saved.
drop index if exists sessions_tenant_done_idx;
