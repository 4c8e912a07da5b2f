-- Rotated OAuth2 refresh tokens, one per named auth (mirrors
-- ../0002_refresh_tokens.sql). Refreshes are serialised across processes by
-- an advisory lock, not by this table.
CREATE TABLE IF NOT EXISTS _apisync_refresh_tokens (
    auth          text PRIMARY KEY,
    refresh_token text NOT NULL,
    updated_at    text NOT NULL
);
