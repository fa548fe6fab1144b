-- Gifting's prelude: the `gift.rejected` event. `REJECT(code)` ({message, temporary})
-- is generated from protocol/errors.py by server/store/scripts.py; its table is built
-- only when a script rejects, not on every call.
local function reject_event(transfer_id, gift_id, code, extra)
  local r = REJECT(code)
  local ev = {type = 'gift.rejected', transfer_id = transfer_id, gift_id = gift_id, code = code,
              message = r[1], temporary = r[2]}
  for k, v in pairs(extra or {}) do ev[k] = v end
  return ev
end
