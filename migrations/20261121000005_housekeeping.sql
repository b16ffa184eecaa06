-- Indexes for the api's periodic purge of rows that can never be used again: idempotency keys
-- past their 24 h, and refresh tokens long expired. Without them each purge scans the table.
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);
