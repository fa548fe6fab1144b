-- Step 1 of a gift, on the sender's slot: check every sender-side rule (this is
-- where the daily limit, the pair limit, the follow age, blocks and real-name
-- verification are enforced), then move the cost out of the sender's balance:
-- `count` into escrow, the festival surplus to burn, the newcomer's free cards paid
-- by the promotion account. Idempotent by transfer id: a replay returns the stored
-- record; the same id with other parameters is a conflict.
-- KEYS[1] - sender profile hash         KEYS[2] - sender balances hash
-- KEYS[3] - sender system accounts      KEYS[4] - sender transfer records
-- KEYS[5] - sender follows hash         KEYS[6] - users the sender blocked
-- KEYS[7] - users who blocked sender    KEYS[8] - sender daily counters (today)
-- KEYS[9] - sender ledger stream        KEYS[10] - sender event stream
-- KEYS[11] - sender channel           KEYS[12] - sender's fan-club levels (creator → level)
-- KEYS[13] - sender daily counters of the day before (its refusals past the recorded ones)
-- ARGV[1] - transfer id   ARGV[2] - gift id   ARGV[3] - recipient
-- ARGV[4] - asset         ARGV[5] - count     ARGV[6] - room or ''
-- ARGV[7] - day key (yyyymmdd)                ARGV[8] - now ms
-- ARGV[9] - gifts per day       ARGV[10] - VIP bonus gifts
-- ARGV[11] - gifts per day to one recipient   ARGV[12] - minimum follow age ms
-- ARGV[13], ARGV[14] - cost numerator, denominator (6/5 on festival days, else 1/1)
-- ARGV[15] - newcomer window ms  ARGV[16] - newcomer free cards
-- ARGV[17] - amount bound        ARGV[18] - day-counter TTL s
-- ARGV[19] - event log bound     ARGV[20] - route of the request ('' if none)
-- ARGV[21] - the live-stream boost tier the price includes (0: none; a room quoted it;
--            -1: the gift names a room that was never created, refused `no_such_room`)
-- ARGV[22] - the fan group it was sent in, or '' (kept in the record: an offer accepted
--            later is shown in its room and group by the accept's steps)
-- ARGV[23] - the partner app's channel it came from, or '' (kept in the record as `ch`:
--            the later steps show it, the partner's bonuses follow it; not in the
--            fingerprint: a resend from another app answers as the first, and an entry
--            re-run by a worker of the version before channels still matches)
-- ARGV[24] - refusals recorded a day: past them a refusal is kept in the day's counters
--            (`r:<transfer id>`), which expire, so a sender whose gifts are all refused
--            cannot grow its records without bound
-- Returns {'applied', record} | {'rejected', event} | {'exists', record} | {'conflict', ''}
local k_profile, k_balances, k_system, k_transfers = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local k_follows, k_blocks, k_blocked_by, k_today = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local k_ledger, k_events, k_channel, k_levels = KEYS[9], KEYS[10], KEYS[11], KEYS[12]
local k_yesterday = KEYS[13]  -- (absent from a caller of the release before it)
local transfer_id, gift_id, recipient = ARGV[1], ARGV[2], ARGV[3]
local asset, count, room = ARGV[4], int_arg(ARGV[5], 'count'), ARGV[6]
local day, now = ARGV[7], int_arg(ARGV[8], 'now')
local per_day, vip_bonus = int_arg(ARGV[9], 'gifts_per_day'), int_arg(ARGV[10], 'vip_bonus')
local pair_per_day, follow_min = int_arg(ARGV[11], 'pair_per_day'), int_arg(ARGV[12], 'follow_min')
local cost_num, cost_den = int_arg(ARGV[13], 'cost_num'), int_arg(ARGV[14], 'cost_den')
local newcomer_ms, free_cards = int_arg(ARGV[15], 'newcomer_window'), int_arg(ARGV[16], 'free_cards')
local amount_max, day_ttl = int_arg(ARGV[17], 'amount_max'), int_arg(ARGV[18], 'day_ttl')
local bound, route = events_bound(ARGV[19]), ARGV[20]
local tier = int_arg(ARGV[21], 'tier')
local group, channel = ARGV[22], ARGV[23]
local refusals_kept = int_arg(ARGV[24], 'refusals_kept')
if group == '' then group = nil end  -- left out of the record: a plain gift's stays as it was
if channel == '' then channel = nil end
if count < 1 then fail('count must be at least 1') end
-- a price never below the count: the sender pays at least what escrow takes (else cards from nothing)
if cost_num < cost_den or cost_den < 1 then fail('a price below the count') end
-- what a replay must repeat exactly (the count as sent, not as a number)
local fingerprint = recipient .. '|' .. asset .. '|' .. ARGV[5] .. '|' .. room
-- the group too (only when there is one: a plain gift's stored fingerprint stays as it was)
if group then fingerprint = fingerprint .. '|g:' .. group end

local stored = redis.call('HGET', k_transfers, transfer_id)
-- the day's counters, read now: they also keep the refusals past the day's recorded ones
local counts = stored and {} or redis.call('HMGET', k_today, 'sent', 'to:' .. recipient,
                                           'r:' .. transfer_id)
stored = stored or counts[3]
-- (and yesterday's: a refusal kept there two days is repeated across midnight too)
if not stored and k_yesterday and k_yesterday ~= k_today then
  stored = redis.call('HGET', k_yesterday, 'r:' .. transfer_id)
end
if stored then
  local rec = cjson.decode(stored)
  if rec.fp ~= fingerprint then return {'conflict', ''} end
  return {'exists', stored}
end

local function reject(code)
  local ev = reject_event(transfer_id, gift_id, code, {asset = asset})
  local json = emit(k_profile, k_events, k_channel, ev, bound, route)
  local rec = cjson.encode({st = 'rejected', fp = fingerprint, code = code, ev = json})
  -- past the day's recorded refusals, kept only with the day's counters (they expire)
  if redis.call('HINCRBY', k_today, 'refused', 1) <= refusals_kept then
    redis.call('HSET', k_transfers, transfer_id, rec)
  else
    redis.call('HSET', k_today, 'r:' .. transfer_id, rec)
  end
  redis.call('EXPIRE', k_today, I(day_ttl), 'NX')  -- none yet when no gift was sent today
  return {'rejected', json}
end

local p = redis.call('HMGET', k_profile, 'registered_at_ms', 'banned', 'real_name', 'vip', 'free_used',
                    'risk_restricted_until', 'risk_frozen_until', 'risk_banned', 'gender')
if not p[1] then
  -- no account to log it in (an event would create one): the refusal goes to the request
  -- only, as a reply (`R<route> <json>`), and nothing is written
  local json = cjson.encode(reject_event(transfer_id, gift_id, 'sender_unknown', {asset = asset}))
  if route ~= '' then redis.call(bound.publish, k_channel, 'R' .. route .. ' ' .. json) end
  return {'rejected', json}
end
if p[2] == '1' or p[8] == '1' then return reject('sender_banned') end
if tier < 0 then return reject('no_such_room') end
-- the risk engine's decisions, re-checked here: a gift queued before a decision reached
-- the gateway is refused now if its cards have not left yet (it was decided, or never)
if tonumber(p[7] or '0') > now then return reject('sender_frozen') end
if tonumber(p[6] or '0') > now then return reject('sender_restricted') end
if p[3] ~= '1' then return reject('real_name_required') end
if redis.call('SISMEMBER', k_blocks, recipient) == 1
    or redis.call('SISMEMBER', k_blocked_by, recipient) == 1 then
  return reject('blocked')
end
local since = redis.call('HGET', k_follows, recipient)
if not since then return reject('not_following') end
if now - tonumber(since) < follow_min then return reject('follow_too_recent') end
local limit = per_day
if p[4] == '1' then limit = limit + vip_bonus end
if tonumber(counts[1] or '0') >= limit then return reject('daily_limit') end
if tonumber(counts[2] or '0') >= pair_per_day then return reject('pair_limit') end

local cost = math.floor((count * cost_num + cost_den - 1) / cost_den)
local free = 0
if now - tonumber(p[1]) < newcomer_ms then
  free = math.min(cost, math.max(0, free_cards - tonumber(p[5] or '0')))
end
local pay = cost - free
if hget_int(k_balances, asset) < pay then return reject('insufficient_balance') end
if cost > amount_max then return reject('amount_too_large') end

-- every check passed: write
local surplus = cost - count
if pay > 0 then redis.call('HINCRBY', k_balances, asset, I(-pay)) end
if free > 0 then
  redis.call('HINCRBY', k_system, 'promo:' .. asset, I(-free))
  redis.call('HINCRBY', k_profile, 'free_used', I(free))
end
if surplus > 0 then redis.call('HINCRBY', k_system, 'burn:' .. asset, I(surplus)) end
redis.call('HINCRBY', k_system, 'escrow:' .. asset, I(count))
-- the day's counters expire `day_ttl` after the day's first gift (set once, when `sent`
-- becomes 1: no other writer removes a TTL)
if redis.call('HINCRBY', k_today, 'sent', 1) == 1 then redis.call('EXPIRE', k_today, I(day_ttl)) end
redis.call('HINCRBY', k_today, 'to:' .. recipient, 1)
-- a gift whose price is not its count (festival, boost, newcomer's free cards) says so on
-- its line; a plain one (count = cost = paid) does not, which keeps the hot path lean
local priced = nil
if cost ~= count or free > 0 or tier > 0 then
  priced = {'count', I(count), 'cost', I(cost), 'free', I(free), 'tier', I(tier)}
end
ledger(k_ledger, transfer_id, asset, -pay, 'escrow', 'gift_out', now, priced)
-- the sender's badge with the recipient (their fan-club level), shown with a gift in a room
local badge = 0
if room ~= '' then badge = tonumber(redis.call('HGET', k_levels, recipient) or '0') end
local rec = {st = 'escrowed', fp = fingerprint, to = recipient, asset = asset, count = count,
             cost = cost, free = free, day = day, gift_id = gift_id, room = room, limit = limit,
             tier = tier, badge = badge, group = group, ch = channel,
             sg = p[9] or nil}  -- the sender's gender: a region's approval rule may name it
local json = cjson.encode(rec)
redis.call('HSET', k_transfers, transfer_id, json)
return {'applied', json}
