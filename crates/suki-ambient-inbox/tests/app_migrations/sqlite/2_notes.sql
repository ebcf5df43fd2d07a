-- An application's own second migration.
CREATE TABLE app_notes (id BIGINT PRIMARY KEY, patient_id BIGINT NOT NULL, body TEXT NOT NULL);
