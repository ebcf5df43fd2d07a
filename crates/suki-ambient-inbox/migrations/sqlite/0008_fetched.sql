-- What a failed attempt fetched (the JSON of a completed session's links), kept for the row's next
-- attempt so that a retry caused by the handler (an EHR down) does not fetch it again: sealed
-- like the body when the inbox has keys (the key id is inside the value), cleared when the row
-- is done and when its body is erased.
ALTER TABLE suki_inbox_deliveries ADD COLUMN fetched BLOB;
