-- Sends pre-signed webhooks from a file, each line at most once, and counts the status codes.
--
-- wrk ... -s bench/post.lua URL -- <file> <first line> <end line, exclusive> <threads>
--                                   <content type> [<signature header>]
-- Lines are "<signature>\t<body>" (bench/signed_requests.py); the signature goes in the named
-- header (none when no header is given: a provider whose proof is in the URL). The content type
-- and header come from the provider's request builder. Thread k of n reads its own
-- contiguous share of [first, end), so no two threads send the same line. A thread that runs out
-- starts its share again and counts a wrap: the harness then knows some requests repeated.
-- Reading line by line keeps memory flat (a file is 100-200 MB).

local threads = {}
local created = 0

function setup(thread)
   thread:set("index", created)
   created = created + 1
   table.insert(threads, thread)
end

local file, start_offset, quota
local used = 0
local headers = {}
local signature_header
-- Globals, not locals: done() reads them from each thread through thread:get.
sent, wraps, statuses = 0, 0, {}

function init(args)
   local path, first, last, count = args[1], tonumber(args[2]), tonumber(args[3]), tonumber(args[4])
   local share = math.floor((last - first) / count)
   local skip = first + index * share
   quota = share
   file = assert(io.open(path, "r"))
   for _ = 1, skip do
      file:read("*l")
   end
   start_offset = file:seek("cur")
   headers["Host"] = wrk.headers["Host"]
   headers["Content-Type"] = assert(args[5], "no content type given")
   if args[6] ~= nil and args[6] ~= "" then
      signature_header = args[6]
   end
end

function request()
   if used == quota then
      file:seek("set", start_offset)
      used = 0
      wraps = wraps + 1
   end
   local line = file:read("*l")
   used = used + 1
   sent = sent + 1
   local tab = string.find(line, "\t", 1, true)
   if signature_header then
      headers[signature_header] = string.sub(line, 1, tab - 1)
   end
   return wrk.format("POST", nil, headers, string.sub(line, tab + 1))
end

function response(status, response_headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local total, total_wraps, total_sent = {}, 0, 0
   for _, thread in ipairs(threads) do
      for code, n in pairs(thread:get("statuses") or {}) do
         total[code] = (total[code] or 0) + n
      end
      total_wraps = total_wraps + (thread:get("wraps") or 0)
      total_sent = total_sent + (thread:get("sent") or 0)
   end
   io.write("bench-statuses:")
   for code, n in pairs(total) do
      io.write(string.format(" %d=%d", code, n))
   end
   io.write(string.format("\nbench-wraps: %d\nbench-sent: %d\n", total_wraps, total_sent))
end
