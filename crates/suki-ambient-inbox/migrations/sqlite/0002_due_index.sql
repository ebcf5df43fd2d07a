-- Claims read the unfinished rows in run_after order. The (state, run_after) index of 0001 made
-- them sort every due row (a state IN (...) list gives no order), and planners without fresh
-- statistics kept choosing it: replaced by a partial index holding only unfinished rows, in
-- claim order, so a claim costs the same with ten rows or ten million.
DROP INDEX suki_inbox_deliveries_due;
CREATE INDEX suki_inbox_deliveries_unfinished
    ON suki_inbox_deliveries (run_after, id)
    WHERE state IN ('pending', 'running');
