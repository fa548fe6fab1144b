-- A partner's joint campaign (多闪's 联合活动资格), on the campaign's own slot: a gift
-- delivered from the partner's channel makes both its sender and its recipient eligible.
-- Idempotent: a member keeps the time it first joined (a retry changes nothing).
-- KEYS[1] - the campaign's members (server/store/keys.py partner_campaign): user → joined ms
-- ARGV[1] - sender   ARGV[2] - recipient   ARGV[3] - now ms
-- Returns {'applied', members who joined now}
local k_members = KEYS[1]
local sender, recipient, now = ARGV[1], ARGV[2], int_arg(ARGV[3], 'now')
if sender == '' or recipient == '' then fail('a campaign joins a sender and a recipient') end
local joined = redis.call('ZADD', k_members, 'NX', I(now), sender, I(now), recipient)
return {'applied', I(joined)}
