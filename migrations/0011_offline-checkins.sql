-- Up Migration
--
-- Offline check-ins (the web check-in page queues them when the network is down): the event keeps the device's
-- time as occurred_at and the server's as recorded_at, as every event does, and says it was sent late. The
-- server refuses queued events older than the company's setting (attendance.offlineMaxHours).
ALTER TABLE attendance_events ADD COLUMN offline boolean NOT NULL DEFAULT false;

-- Down Migration
ALTER TABLE attendance_events DROP COLUMN offline;
