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
        local subscription = first(answer.headers, "x-tollbooth-subscription")
        if subscription ~= nil then
            local now = core.now()
            txn:set_var("txn.tollbooth_subscription", subscription)
            txn:set_var("txn.tollbooth_api", api)
            txn:set_var("txn.tollbooth_consumer", first(request, "x-api-key") or "")
            txn:set_var("txn.tollbooth_started", string.format("%d.%06d", now.sec, now.usec))
            txn:set_var("txn.tollbooth_method", txn.sf:method())
            txn:set_var("txn.tollbooth_path", txn.sf:path())
        end
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

-- Call records ---------------------------------------------------------------------------------

local waiting = {}         -- NDJSON lines not yet taken by tollbooth, oldest first
local posting = false      -- whether a task is posting them
local most_waiting = 200000
local most_in_a_post = 5000
local units_header = "x-usage-units"

local function json_string(text)
    return '"' .. tostring(text):gsub('[%c"\\]', function(c)
        return string.format("\\u%04x", string.byte(c))
    end) .. '"'
end

-- RFC 3339 in UTC with milliseconds, from "seconds.microseconds".
local function rfc3339(started)
    local sec, usec = started:match("^(%d+)%.(%d+)$")
    return os.date("!%Y-%m-%dT%H:%M:%S", tonumber(sec)) .. string.format(".%03dZ", tonumber(usec) // 1000)
end

-- Posts the oldest batch; answers whether tollbooth took it (202).
local function post(count)
    local tollbooth = os.getenv("TOLLBOOTH_URL") or "http://127.0.0.1:8080"
    local lines = table.move(waiting, 1, count, 1, {})
    local answer = core.httpclient():post({
        url = tollbooth .. "/v1/events",
        headers = {
            ["authorization"] = { "Bearer " .. (os.getenv("TOLLBOOTH_GATEWAY_KEY") or "") },
            ["content-type"] = { "application/x-ndjson" },
        },
        body = table.concat(lines, "\n") .. "\n",
        timeout = 10000,
    })
    return answer ~= nil and answer.status == 202, answer and answer.status
end

-- Sends what waits, batch by batch, until nothing does: records kept while a post is under way go
-- in the next one. A batch tollbooth did not take is tried again a second later.
local function flush()
    while #waiting > 0 do
        local count = math.min(#waiting, most_in_a_post)
        local ok, taken, status = pcall(post, count)
        if ok and taken then
            waiting = table.move(waiting, count + 1, #waiting, 1, {})
        else
            core.Warning("tollbooth records: " .. count .. " not taken (" .. tostring(status or taken)
                .. "); kept to send again")
            core.msleep(1000)
        end
    end
    posting = false
end

core.register_action("tollbooth-record", { "http-res" }, function(txn)
    local subscription = txn:get_var("txn.tollbooth_subscription")
    if subscription == nil then
        return
    end
    if #waiting >= most_waiting then
        core.Alert("tollbooth records: " .. #waiting .. " waiting for tollbooth; this call is not recorded")
        return
    end
    local started = txn:get_var("txn.tollbooth_started")
    local now = core.now()
    local sec, usec = started:match("^(%d+)%.(%d+)$")
    local latency_ms = ((now.sec - tonumber(sec)) * 1000000 + now.usec - tonumber(usec)) // 1000
    local fields = {
        '"id":' .. json_string(txn.f:unique_id()),
        '"consumer":' .. json_string(txn:get_var("txn.tollbooth_consumer")),
        '"api":' .. json_string(txn:get_var("txn.tollbooth_api")),
        '"timestamp":' .. json_string(rfc3339(started)),
        '"status":' .. txn.sf:status(),
        '"method":' .. json_string(txn:get_var("txn.tollbooth_method")),
        '"path":' .. json_string(txn:get_var("txn.tollbooth_path")),
        '"latency_ms":' .. latency_ms,
    }
    local units = txn.sf:res_hdr(units_header)
    if units ~= nil and units ~= "" then
        fields[#fields + 1] = '"units":' .. json_string(units)
    end
    waiting[#waiting + 1] = "{" .. table.concat(fields, ",") .. "}"
    if not posting then
        posting = true
        core.register_task(flush)
    end
end, 0)
