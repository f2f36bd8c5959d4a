-- custinfo.phone_key(value) reduces a stored phone number, as people type it,
-- to the key that `phone` matching compares: '+' and the digits of an
-- international number, or the bare digits of a national one. It is
-- IMMUTABLE so that an expression index can hold it:
--
--   CREATE INDEX CONCURRENTLY customers_phone_key_idx
--       ON crm.customers (custinfo.phone_key(mobile));
--
-- The steps (internal/phone.Key is the same function in Go; a test keeps the two equal):
--   1. Only the first 256 characters are read.
--   2. In a UTF8 database: NFKC (full-width digits and signs, the ideographic and
--      no-break spaces become ASCII), Arabic-Indic digits become 0-9, Unicode
--      dashes and the katakana prolonged sound mark become '-', zero-width
--      characters and the soft hyphen are dropped.
--   3. Leading blanks and a "tel:" prefix (any case) are dropped.
--   4. The number is the longest prefix made of digits, '+', blanks and
--      ( ) . / ' " -; the rest, from the first other character on, is a note or
--      an extension and is ignored: "010-1234-5678 (mobile)", "ext. 12", "x12",
--      "내선 12", ";ext=12", "#12".
--   5. "(0)" is dropped: "+44 (0)20 ...", "(0)30 123456".
--   6. The number is international when its first digit-or-plus is '+', or its
--      digits start with 00. The key is '+' and the digits (after the 00 when
--      there was no '+') for an international number, the digits otherwise,
--      NULL when there are none. A key is its own key.
--
-- A national value never gets a '+', so it can never equal another country's
-- international number, however alike the digits.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION custinfo.phone_key(value text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    v      text := left(value, 256);
    digits text;
BEGIN
    IF getdatabaseencoding() = 'UTF8' THEN
        -- From: U+0660-0669 and U+06F0-06F9 (Arabic-Indic digits),
        -- U+2010-2015, U+2212, U+30FC (dashes), U+00AD, U+200B-200D, U+2060,
        -- U+FEFF (soft hyphen, zero-width); written as UTF-8 bytes so that
        -- the function is created in a database of any encoding.
        v := translate(normalize(v, NFKC),
            convert_from('\xd9a0d9a1d9a2d9a3d9a4d9a5d9a6d9a7d9a8d9a9dbb0dbb1dbb2dbb3dbb4dbb5dbb6dbb7dbb8dbb9e28090e28091e28092e28093e28094e28095e28892e383bcc2ade2808be2808ce2808de281a0efbbbf'::bytea, 'UTF8'),
            '01234567890123456789--------');
    END IF;
    v := regexp_replace(v, '^[ \t\r\n]*[Tt][Ee][Ll]:', '');
    v := substring(v from '^[0-9+ \t\r\n()./''"-]*');
    v := replace(v, '(0)', '');
    digits := regexp_replace(v, '[^0-9]', '', 'g');
    IF digits = '' THEN
        RETURN NULL;
    ELSIF v ~ '^[^0-9+]*[+]' THEN
        RETURN '+' || digits;
    ELSIF digits LIKE '00%' THEN
        RETURN '+' || nullif(substr(digits, 3), '');
    END IF;
    RETURN digits;
END;
$$;
-- +goose StatementEnd

COMMENT ON FUNCTION custinfo.phone_key(text) IS
    'Key of a stored phone number for match = ''phone'': ''+'' and digits for an international number, digits for a national one, NULL without digits. Index it: CREATE INDEX ON t (custinfo.phone_key(col)).';

-- +goose Down
DROP FUNCTION custinfo.phone_key(text);
