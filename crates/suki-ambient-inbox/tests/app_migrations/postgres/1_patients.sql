-- An application's own first migration (version 1, as the inbox's first one).
CREATE TABLE app_patients (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
