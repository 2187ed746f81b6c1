-- What a buyer typed at checkout, kept until the order is placed or the
-- cart emptied (and never longer than a day after the last change), so
-- that switching the currency, changing the cart, going back from the
-- review or a declined card loses nothing. Sealed under a key made from
-- the server's secret and the buyer's cookie: neither opens it alone.
-- Never the card number or security code.
CREATE TABLE checkout_drafts (
    id         BYTEA PRIMARY KEY NOT NULL,
    sealed     BYTEA NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX checkout_drafts_by_expiry ON checkout_drafts (expires_at);
