-- Mixed GraphQL load for wrk: in every 10 requests, 3 `ticket` and 1 `tickets` query, 1
-- `slaStats`, 1 `overdueCounters`, 2 `registerTicket` with a unique idempotency key and 2
-- `commentTicket` on existing tickets. IDS_FILE names a file with one ticket id per line.
-- Every response is checked: a status outside 2xx or a body with "errors" is counted, and the
-- first few of each kind are printed per thread.

local threads = {}
local next_thread = 1

function setup(thread)
  thread:set("thread_number", next_thread)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end

local ids = {}
local sent = 0
non_2xx = 0
graphql_errors = 0
checked = 0
local printed = 0

function init(args)
  local path = os.getenv("IDS_FILE")
  if path == nil then
    error("IDS_FILE is not set")
  end
  for line in io.lines(path) do
    if line ~= "" then
      ids[#ids + 1] = line
    end
  end
  if #ids == 0 then
    error("IDS_FILE " .. path .. " has no ticket ids")
  end
  math.randomseed(os.time() + thread_number)
end

local function random_id()
  return ids[math.random(#ids)]
end

-- READ_ONLY=1 sends only the queries, so that the server's memory can be watched without the
-- data growing.
local read_only = os.getenv("READ_ONLY") == "1"

local function body_for(number)
  local kind = number % 10
  if read_only then
    kind = number % 6
  end
  if kind < 3 then
    return string.format('{"query":"{ ticket(id: \\"%s\\") { id status category events { eventType } } }"}', random_id())
  elseif kind == 3 then
    return '{"query":"{ tickets(first: 20) { totalCount edges { node { id status } } } }"}'
  elseif kind == 4 then
    return '{"query":"{ slaStats(groupBy: [ORGANIZATION]) { group { label } received resolved onTimeShare } }"}'
  elseif kind == 5 then
    return '{"query":"{ overdueCounters(groupBy: [DISTRICT]) { group { label } open overdue } }"}'
  elseif kind < 8 then
    local key = string.format("load-%d-%d", thread_number, number)
    return '{"query":"mutation($input: RegisterTicketInput!) { registerTicket(input: $input) { ticketId position } }",'
      .. '"variables":{"input":{"channel":"WEB","requester":{"name":"Нагрузочный тест"},'
      .. '"building":{"id":"load-building-1","address":"Казань, ул. Пушкина, 1","district":"Вахитовский",'
      .. '"timeZone":"Europe/Moscow","region":"RU-TA"},"premises":"12","category":"roof_leak",'
      .. '"description":"Протекает крыша над квартирой","idempotencyKey":"' .. key .. '"}}}'
  else
    return string.format('{"query":"mutation { commentTicket(id: \\"%s\\", author: \\"load\\", text: \\"Проверка связи\\") { position } }"}', random_id())
  end
end

-- OPENCITY_TOKEN is the secret of a token created by `opencity tokens create`.
local token = os.getenv("OPENCITY_TOKEN")
if token == nil then
  error("OPENCITY_TOKEN is not set")
end
headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }

function request()
  sent = sent + 1
  return wrk.format("POST", "/graphql", headers, body_for(sent))
end

function response(status, headers, body)
  checked = checked + 1
  local failed = false
  if status < 200 or status > 299 then
    non_2xx = non_2xx + 1
    failed = true
  end
  if body ~= nil and string.find(body, '"errors"', 1, true) then
    graphql_errors = graphql_errors + 1
    failed = true
  end
  if failed and printed < 3 then
    printed = printed + 1
    io.stderr:write(string.format("thread %d: status %d: %s\n", thread_number, status, string.sub(body or "", 1, 300)))
  end
end

function done(summary, latency, requests)
  local total_non_2xx, total_errors, total_checked = 0, 0, 0
  for _, thread in ipairs(threads) do
    total_non_2xx = total_non_2xx + thread:get("non_2xx")
    total_errors = total_errors + thread:get("graphql_errors")
    total_checked = total_checked + thread:get("checked")
  end
  io.write(string.format("checked_responses=%d non_2xx=%d graphql_errors=%d socket_errors=%d\n",
    total_checked, total_non_2xx, total_errors,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
