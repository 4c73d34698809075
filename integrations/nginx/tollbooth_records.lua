-- tollbooth's call records from NGINX (libnginx-mod-http-lua): each call tollbooth allowed and the
-- upstream answered is kept in the worker's buffer by `record(api)` (log phase) and posted to
-- tollbooth's `POST /v1/events` as NDJSON once a second. A batch tollbooth did not take (a 503,
-- any other non-202, a connection failure) stays in the buffer and is sent again, unchanged (same
-- ids: tollbooth deduplicates them), so nothing is lost while tollbooth restarts; the buffer is
-- flushed when the worker stops (reload, graceful stop). Calls NGINX answered itself (a refusal,
-- tollbooth unreachable) are not records: they never reached the api.
--
--   init_worker_by_lua_block {
--       require("tollbooth_records").start({ address = "127.0.0.1:8080", key = "tbg_…" })
--   }
--   location /weather/ { ... log_by_lua_block { require("tollbooth_records").record("weather") } }

local M = {}

local settings = {
    address = nil,          -- "host:port" of tollbooth
    host = "127.0.0.1",
    port = 8080,
    key = "",
    every = 1,              -- seconds between posts
    batch = 5000,           -- most records in one post
    buffered = 200000,      -- most records kept while tollbooth does not take them
    consumer_header = "x-api-key",
    units_header = "x-usage-units",
}

local buffer = {}
local flushing = false

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function json_string(text)
    return '"' .. tostring(text):gsub('[%c"\\]', function(c)
        return escapes[c] or string.format("\\u%04x", string.byte(c))
    end) .. '"'
end

local function timestamp(msec)
    local seconds = math.floor(msec)
    local millis = math.floor((msec - seconds) * 1000 + 0.5)
    if millis >= 1000 then
        seconds, millis = seconds + 1, millis - 1000
    end
    return os.date("!%Y-%m-%dT%H:%M:%S", seconds) .. string.format(".%03dZ", millis)
end

-- The log phase of a call: a record when tollbooth allowed it and the upstream answered.
function M.record(api)
    local var = ngx.var
    if (var.tollbooth_subscription or "") == "" or (var.upstream_status or "") == "" then
        return
    end
    if #buffer >= settings.buffered then
        ngx.log(ngx.ERR, "tollbooth records: ", #buffer, " waiting for tollbooth; this call is not recorded")
        return
    end
    local fields = {
        '"id":' .. json_string(var.request_id),
        '"consumer":' .. json_string(var["http_" .. settings.consumer_header:gsub("-", "_")] or ""),
        '"api":' .. json_string(api),
        '"timestamp":' .. json_string(timestamp(tonumber(var.msec))),
        '"status":' .. tonumber(var.status),
        '"method":' .. json_string(var.request_method),
        '"path":' .. json_string(var.uri),
    }
    local units = var["upstream_http_" .. settings.units_header:gsub("-", "_")]
    if units ~= nil and units ~= "" then
        fields[#fields + 1] = '"units":' .. json_string(units)
    end
    local latency = tonumber(var.upstream_response_time)
    if latency ~= nil then
        fields[#fields + 1] = '"latency_ms":' .. math.floor(latency * 1000 + 0.5)
    end
    buffer[#buffer + 1] = "{" .. table.concat(fields, ",") .. "}"
end

-- Posts up to one batch; answers whether tollbooth took it (202).
local function post(lines)
    local body = table.concat(lines, "\n") .. "\n"
    local sock = ngx.socket.tcp()
    sock:settimeout(10000)
    local ok, err = sock:connect(settings.host, settings.port)
    if not ok then
        return false, err
    end
    local request = "POST /v1/events HTTP/1.1\r\nHost: " .. settings.host .. "\r\n" ..
        "Authorization: Bearer " .. settings.key .. "\r\n" ..
        "Content-Type: application/x-ndjson\r\nContent-Length: " .. #body .. "\r\n" ..
        "Connection: close\r\n\r\n" .. body
    local sent, send_err = sock:send(request)
    if not sent then
        sock:close()
        return false, send_err
    end
    local line, read_err = sock:receive("*l")
    sock:close()
    if not line then
        return false, read_err
    end
    local status = tonumber(line:match("^HTTP/%d%.%d (%d%d%d)"))
    return status == 202, line
end

-- Sends what is buffered, batch by batch, until tollbooth refuses or all is sent; one flush at a
-- time (a timer fires again while a slow post is under way).
local function flush()
    if flushing then
        return
    end
    flushing = true
    local ok, err = pcall(function()
        while #buffer > 0 do
        local count = math.min(#buffer, settings.batch)
        local lines = {}
        for i = 1, count do
            lines[i] = buffer[i]
        end
        local taken, why = post(lines)
        if not taken then
            ngx.log(ngx.WARN, "tollbooth records: ", count, " not taken (", tostring(why), "); kept to send again")
            return
        end
        local rest = {}
        for i = count + 1, #buffer do
            rest[#rest + 1] = buffer[i]
        end
        buffer = rest
        end
    end)
    flushing = false
    if not ok then
        ngx.log(ngx.ERR, "tollbooth records: ", tostring(err))
    end
end

local function tick(premature)
    flush()
    if premature and #buffer > 0 then
        ngx.log(ngx.ERR, "tollbooth records: ", #buffer, " not sent as the worker stopped")
    end
end

function M.start(options)
    for name, value in pairs(options or {}) do
        settings[name] = value
    end
    if settings.address then
        local host, port = settings.address:match("^(.+):(%d+)$")
        settings.host, settings.port = host or settings.address, tonumber(port) or 80
    end
    local ok, err = ngx.timer.every(settings.every, tick)
    if not ok then
        ngx.log(ngx.ERR, "tollbooth records: no timer: ", err)
    end
end

return M
