-- Where the gateway serves each api (domain::api::ApiSpec `hosts` and `path_prefixes`, as JSON
-- `{"hosts": [...], "path_prefixes": [...]}`), for the access decision to find the api from the
-- original request.
ALTER TABLE apis ADD COLUMN routes TEXT NOT NULL DEFAULT '{}';
