-- Access tokens issued before this instant are refused (a password change, logout-all or an
-- admin disabling the account ends every session, not only the refresh tokens). NULL: none.
ALTER TABLE users ADD COLUMN tokens_valid_after TIMESTAMPTZ;
