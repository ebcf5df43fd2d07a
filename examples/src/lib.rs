//! Runnable examples of the suki-ambient SDK; see `src/bin/`. Each receiver reads
//! `SUKI_WEBHOOK_SECRET`, listens on `BIND` (default `127.0.0.1:3000`) and serves
//! `POST /webhooks/suki`.
