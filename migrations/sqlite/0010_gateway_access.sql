-- How each gateway asks for the access decision (domain::gateway::GatewayAccess as JSON): where
-- the caller's key and the api are in the request it forwards, and how refusals are answered.
ALTER TABLE gateways ADD COLUMN access TEXT NOT NULL DEFAULT '{}';
