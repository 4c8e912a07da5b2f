-- Rotated OAuth2 refresh tokens, one per named auth. The only place a
-- secret is stored: it takes precedence over the configured refresh token.
CREATE TABLE IF NOT EXISTS _apisync_refresh_tokens (
    auth          TEXT PRIMARY KEY NOT NULL,
    refresh_token TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
