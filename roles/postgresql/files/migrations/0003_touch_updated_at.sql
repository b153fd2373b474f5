-- Keep updated_at current on every update, whatever the client sends.
CREATE FUNCTION touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER users_touch_updated_at
    BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

CREATE TRIGGER contents_touch_updated_at
    BEFORE UPDATE ON contents
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
