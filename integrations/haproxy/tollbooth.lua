-- tollbooth's access decision for HAProxy 2.5 and later (core.httpclient).
--
-- `http-request lua.tollbooth-authorize <api slug>` asks tollbooth whether the caller may call
-- the api: the caller's own X-Api-Key and Authorization are passed on, the api and the gateway key
-- (TOLLBOOTH_GATEWAY_KEY) are set here. Allowed: the request goes on with X-Tollbooth-Subscription
-- and X-Tollbooth-Tier. Refused: the caller gets tollbooth's answer as it was written.


local passed_to_tollbooth = { "x-api-key", "authorization" }
local passed_to_upstream = { "x-tollbooth-subscription", "x-tollbooth-tier", "x-tollbooth-remaining" }
local passed_to_caller = {
    "retry-after", "x-tollbooth-reason", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset",
}

-- The first value of a header in a table of HAProxy's form (values indexed from 0).
local function first(headers, name)
    local values = headers[name]
    if values == nil then
        return nil
    end
    return values[0] or values[1]
end

local function reply(txn, status, body, headers)
    headers["content-type"] = { "application/json" }
    txn:done(txn:reply({ status = status, body = body, headers = headers }))
end

core.register_action("tollbooth-authorize", { "http-req" }, function(txn, api)
    -- Read at each call: `setenv` in the global section may come after `lua-load`.
    local tollbooth = os.getenv("TOLLBOOTH_URL") or "http://127.0.0.1:8080"
    local gateway_key = os.getenv("TOLLBOOTH_GATEWAY_KEY") or ""
    local request = txn.http:req_get_headers()
    local ask = {
        ["x-tollbooth-key"] = { gateway_key },
        ["x-tollbooth-api"] = { api },
        ["x-forwarded-uri"] = { txn.sf:pathq() },
        ["x-forwarded-method"] = { txn.sf:method() },
    }
    for _, name in ipairs(passed_to_tollbooth) do
        local value = first(request, name)
        if value ~= nil then
            ask[name] = { value }
        end
    end
    local answer = core.httpclient():get({ url = tollbooth .. "/v1/authorize", headers = ask, timeout = 2000 })
    -- No answer from tollbooth (the HTTP client's own 503 has none of tollbooth's headers).
    if answer == nil or answer.status == nil or answer.status == 0
        or (answer.status == 503 and first(answer.headers or {}, "content-type") ~= "application/json") then
        return reply(txn, 503, '{"allowed":false,"reason":"tollbooth_unavailable"}\n', {})
    end
    if answer.status == 200 then
        for _, name in ipairs(passed_to_upstream) do
            local value = first(answer.headers, name)
            txn.http:req_del_header(name)
            if value ~= nil then
                txn.http:req_set_header(name, value)
            end
        end
        return
    end
    local headers = {}
    for _, name in ipairs(passed_to_caller) do
        local value = first(answer.headers, name)
        if value ~= nil then
            headers[name] = { value }
        end
    end
    return reply(txn, answer.status, answer.body or "", headers)
end, 1)
